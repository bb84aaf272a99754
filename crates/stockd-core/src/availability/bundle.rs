//! Bundle (kit) definitions: validation (no cycles, no self-reference) and
//! the graph that says which listings a stock change affects, both ways — a
//! component's change reaches every kit containing it, a kit reaches its
//! components.

use crate::ids::Sku;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A kit: a variant made of other variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub kit: Sku,
    pub components: Vec<BundleComponent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleComponent {
    pub sku: Sku,
    /// Units of the component in one kit (≥ 1).
    pub qty: u32,
}

/// Why a set of bundle definitions is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum BundleError {
    #[error("kit {kit} has no components")]
    NoComponents { kit: Sku },
    #[error("kit {kit}: component {component} has qty 0")]
    ZeroQty { kit: Sku, component: Sku },
    #[error("kit {kit} lists component {component} twice")]
    DuplicateComponent { kit: Sku, component: Sku },
    #[error("kit {kit} is defined twice")]
    DuplicateKit { kit: Sku },
    #[error("kit {kit} contains itself")]
    SelfReference { kit: Sku },
    /// `cycle` starts and ends with the same sku: `A → B → A`.
    #[error("bundle cycle: {}", display_cycle(cycle))]
    Cycle { cycle: Vec<Sku> },
}

fn display_cycle(cycle: &[Sku]) -> String {
    cycle
        .iter()
        .map(Sku::as_str)
        .collect::<Vec<_>>()
        .join(" → ")
}

impl BundleError {
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::NoComponents { .. } => "no_components",
            BundleError::ZeroQty { .. } => "zero_qty",
            BundleError::DuplicateComponent { .. } => "duplicate_component",
            BundleError::DuplicateKit { .. } => "duplicate_kit",
            BundleError::SelfReference { .. } => "self_reference",
            BundleError::Cycle { .. } => "bundle_cycle",
        }
    }
}

/// Validated bundle definitions: acyclic, every qty ≥ 1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleGraph {
    components: BTreeMap<Sku, Vec<BundleComponent>>,
    /// Component sku → kits that list it directly.
    containing: BTreeMap<Sku, BTreeSet<Sku>>,
}

/// Checks a full set of bundle definitions (e.g. the stored ones with one
/// upsert applied). Every problem is reported.
pub fn validate_bundles(bundles: &[Bundle]) -> Result<BundleGraph, Vec<BundleError>> {
    let mut errors = Vec::new();
    let mut graph = BundleGraph::default();
    for bundle in bundles {
        let kit = &bundle.kit;
        if graph.components.contains_key(kit) {
            errors.push(BundleError::DuplicateKit { kit: kit.clone() });
            continue;
        }
        if bundle.components.is_empty() {
            errors.push(BundleError::NoComponents { kit: kit.clone() });
        }
        let mut seen = BTreeSet::new();
        for component in &bundle.components {
            if component.sku == *kit {
                errors.push(BundleError::SelfReference { kit: kit.clone() });
            } else if !seen.insert(&component.sku) {
                errors.push(BundleError::DuplicateComponent {
                    kit: kit.clone(),
                    component: component.sku.clone(),
                });
            }
            if component.qty == 0 {
                errors.push(BundleError::ZeroQty {
                    kit: kit.clone(),
                    component: component.sku.clone(),
                });
            }
        }
        for component in &bundle.components {
            if component.sku != *kit {
                graph
                    .containing
                    .entry(component.sku.clone())
                    .or_default()
                    .insert(kit.clone());
            }
        }
        graph
            .components
            .insert(kit.clone(), bundle.components.clone());
    }
    errors.extend(graph.cycles());
    if errors.is_empty() {
        Ok(graph)
    } else {
        Err(errors)
    }
}

impl BundleGraph {
    /// Direct components of a kit (empty when `sku` is not a kit).
    pub fn components(&self, kit: &Sku) -> &[BundleComponent] {
        self.components.get(kit).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn is_kit(&self, sku: &Sku) -> bool {
        self.components.contains_key(sku)
    }

    /// Every kit that contains `sku`, directly or through another kit.
    pub fn kits_containing(&self, sku: &Sku) -> BTreeSet<Sku> {
        self.reach(sku, |s| {
            self.containing.get(s).into_iter().flatten().collect()
        })
    }

    /// Every component of `kit`, directly or through a nested kit.
    pub fn components_of(&self, kit: &Sku) -> BTreeSet<Sku> {
        self.reach(kit, |s| self.components(s).iter().map(|c| &c.sku).collect())
    }

    /// The skus whose listings a change of `changed` may move: itself, every
    /// kit containing it and, when it is a kit, its components.
    pub fn affected_skus(&self, changed: &Sku) -> BTreeSet<Sku> {
        let mut out = self.kits_containing(changed);
        out.extend(self.components_of(changed));
        out.insert(changed.clone());
        out
    }

    /// Breadth-first closure; `visited` bounds it by the number of skus.
    fn reach<'a>(&'a self, start: &'a Sku, next: impl Fn(&Sku) -> Vec<&'a Sku>) -> BTreeSet<Sku> {
        let mut visited: BTreeSet<&Sku> = BTreeSet::new();
        let mut queue: VecDeque<&Sku> = VecDeque::from([start]);
        while let Some(sku) = queue.pop_front() {
            for n in next(sku) {
                if n != start && visited.insert(n) {
                    queue.push_back(n);
                }
            }
        }
        visited.into_iter().cloned().collect()
    }

    /// One cycle per back edge of an iterative depth-first search (self
    /// references are reported separately and skipped here).
    fn cycles(&self) -> Vec<BundleError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Active,
            Done,
        }
        let mut marks: BTreeMap<&Sku, Mark> = BTreeMap::new();
        let mut found = Vec::new();
        for root in self.components.keys() {
            if marks.contains_key(root) {
                continue;
            }
            // (node, index of the next child to visit)
            let mut stack: Vec<(&Sku, usize)> = vec![(root, 0)];
            marks.insert(root, Mark::Active);
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let children = self.components(node);
                if *next >= children.len() {
                    marks.insert(node, Mark::Done);
                    stack.pop();
                    continue;
                }
                let child = &children[*next].sku;
                *next += 1;
                if child == node {
                    continue;
                }
                match marks.get(child) {
                    Some(Mark::Done) => {}
                    Some(Mark::Active) => {
                        let from = stack.iter().position(|(s, _)| *s == child).unwrap_or(0);
                        let mut cycle: Vec<Sku> =
                            stack[from..].iter().map(|(s, _)| (*s).clone()).collect();
                        cycle.push(child.clone());
                        found.push(BundleError::Cycle { cycle });
                    }
                    None => {
                        marks.insert(child, Mark::Active);
                        stack.push((child, 0));
                    }
                }
            }
        }
        found
    }
}
