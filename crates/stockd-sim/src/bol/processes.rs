//! Process status: one process, the processes of an entity, and the bulk lookup.

use super::http::{bad_request, not_found, vnd_json, Ctx};
use super::state::Bol;
use super::*;

impl Bol {
    pub(super) fn get_process(&self, ctx: &Ctx, id: &str) -> Response {
        let mut st = lock(&self.state);
        self.settle(&mut st);
        match id.parse::<u64>().ok().and_then(|n| st.processes.get(&n)) {
            Some(p) => vnd_json(StatusCode::OK, MEDIA_V10, &self.process_json(p)),
            None => not_found(ctx.instance()),
        }
    }

    pub(super) fn processes_by_entity(&self, ctx: &Ctx) -> Response {
        let mut violations = Vec::new();
        let entity = ctx.q("entity-id").unwrap_or("");
        if entity.is_empty() {
            violations.push(("entity-id".into(), "Required parameter is missing.".into()));
        }
        let event = ctx.q("event-type").unwrap_or("");
        if event.is_empty() {
            violations.push(("event-type".into(), "Required parameter is missing.".into()));
        }
        let page = match ctx.q("page").map(str::parse::<usize>) {
            None => 1,
            Some(Ok(n)) if n >= 1 => n,
            Some(_) => {
                violations.push(("page".into(), "Must be greater than or equal to 1.".into()));
                1
            }
        };
        if !violations.is_empty() {
            return bad_request(ctx.instance(), violations);
        }
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let list: Vec<Value> = st
            .processes
            .values()
            .rev()
            .filter(|p| p.entity_id == entity && p.event_type == event)
            .skip((page - 1) * PAGE_SIZE)
            .take(PAGE_SIZE)
            .map(|p| self.process_json(p))
            .collect();
        vnd_json(StatusCode::OK, MEDIA_V10, &json!({"processStatuses": list}))
    }

    pub(super) fn processes_bulk(&self, ctx: &Ctx) -> Response {
        let body = match self.parse_body(ctx) {
            Ok(b) => b,
            Err(r) => return *r,
        };
        let ids: Option<Vec<String>> = body
            .get("processStatusQueries")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|q| match q.get("processStatusId") {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Number(n)) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            });
        let ids = match ids {
            Some(ids) if (1..=1000).contains(&ids.len()) => ids,
            _ => {
                return bad_request(
                    ctx.instance(),
                    vec![(
                        "processStatusQueries".into(),
                        "Size must be between 1 and 1000.".into(),
                    )],
                )
            }
        };
        let mut st = lock(&self.state);
        self.settle(&mut st);
        let list: Vec<Value> = ids
            .iter()
            .filter_map(|id| id.parse::<u64>().ok().and_then(|n| st.processes.get(&n)))
            .map(|p| self.process_json(p))
            .collect();
        vnd_json(StatusCode::OK, MEDIA_V10, &json!({"processStatuses": list}))
    }
}
