//! Integration tests against the real local control plane (`cargo xtask cluster up`).
//! One binary, so the crate links once; each test works in a namespace of its own.

mod apiserver;
mod argocd;
mod background;
mod check;
mod cli;
mod common;
mod faults;
mod flags;
mod fleet;
mod flux;
mod foundation;
mod gitops;
mod guard;
mod guard_pin;
mod helm;
mod helm_controller;
mod keda;
mod krew;
mod late_events;
mod migrate;
mod preflight;
mod rbac;
mod strip;
mod strip_helm;
mod terminal;
mod tools;
mod verify;
