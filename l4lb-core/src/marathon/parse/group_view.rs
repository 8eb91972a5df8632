//! [`GroupView`]: what a group's services are made from, read in place
//! when one part declares the group (the common case), so a catalog build
//! makes no B-tree of its labels, apps and backends for it.
use std::net::SocketAddr;

use crate::model::Backends;
use crate::naming::Family;

use super::{
    catalog::{Families, Group, origin, origin_of_one},
    part::PartGroup,
};

/// A group merged from its parts, or the one part that declares it.
#[derive(Clone, Copy)]
pub(super) enum GroupView<'a> {
    Merged(&'a Group),
    /// The group as merging only this part (`app_id`'s) would make it.
    One {
        app_id: &'a str,
        pg: &'a PartGroup,
    },
}

impl GroupView<'_> {
    /// The smallest label, the service's name.
    pub(super) fn first_label(&self) -> Option<&String> {
        match self {
            GroupView::Merged(g) => g.labels.first(),
            GroupView::One { pg, .. } => pg.labels.first(),
        }
    }

    /// Every label, in order (the smallest first).
    pub(super) fn labels(&self) -> Vec<&str> {
        match self {
            GroupView::Merged(g) => g.labels.iter().map(String::as_str).collect(),
            GroupView::One { pg, .. } => pg.labels.iter().map(String::as_str).collect(),
        }
    }

    /// The smallest id of the apps that declare it.
    pub(super) fn first_app(&self) -> Option<&str> {
        match self {
            GroupView::Merged(g) => g.apps.first().map(String::as_str),
            GroupView::One { app_id, .. } => Some(app_id),
        }
    }

    pub(super) fn framework(&self) -> &Option<String> {
        match self {
            GroupView::Merged(g) => &g.framework,
            GroupView::One { pg, .. } => &pg.framework,
        }
    }

    /// Backends and their weights, in address order, each once.
    pub(super) fn backends(&self) -> impl Iterator<Item = (SocketAddr, u32)> + '_ {
        let (merged, one) = match self {
            GroupView::Merged(g) => (Some(&g.backends), None),
            GroupView::One { pg, .. } => (None, Some(&pg.backends)),
        };
        let merged = merged.into_iter().flatten();
        merged
            .chain(one.into_iter().flatten())
            .map(|(a, w)| (*a, *w))
    }

    /// The backends in `family` (all: None) as a service holds them: the
    /// one part's own list when it has no other (a count, not a copy).
    pub(super) fn service_backends(&self, family: Option<Family>) -> Backends {
        let of = |a: &SocketAddr| family.is_none_or(|f| Family::of(a.ip()) == f);
        match self {
            GroupView::One { pg, .. } if pg.backends.keys().all(of) => pg.backends.clone(),
            _ => self.backends().filter(|(a, _)| of(a)).collect(),
        }
    }

    pub(super) fn has_backends(&self) -> bool {
        self.backends().next().is_some()
    }

    pub(super) fn families(&self) -> Families {
        match self {
            GroupView::Merged(g) => g.families(),
            GroupView::One { pg, .. } => Families::of(pg.backends.iter().map(|(a, _)| a)),
        }
    }

    /// `app /a` or `apps /a, /b`: who declared it.
    pub(super) fn origin(&self) -> Option<String> {
        match self {
            GroupView::Merged(g) => origin(&g.apps),
            GroupView::One { app_id, .. } => Some(origin_of_one(app_id)),
        }
    }
}
