//! The API test binary: every test starts its own server on 127.0.0.1:0 with
//! a fresh database and talks HTTP to it. Contract tests run on SQLite and on
//! PostgreSQL (skipped loudly when PostgreSQL is unreachable, unless
//! STOCKD_REQUIRE_SERVICES=1).

mod helpers;

mod auth;
mod bol_returns;
mod bundles;
mod catalog;
mod channels;
mod cli;
mod console;
mod events;
mod feeds;
mod http;
mod inbound;
mod ops;
mod order_poll;
mod orders;
mod quarantine;
mod reconcile;
mod reconcile_bulk;
mod refunds;
mod returns;
mod rules;
mod stock;
mod sync;
mod tracked;
mod unmapped;
