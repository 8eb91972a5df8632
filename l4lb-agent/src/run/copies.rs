//! The catalog's copy of a source's services (the DNS zones and the HTTP
//! API read `Catalog::services`, a BTreeMap), made by what changed: the
//! copy the view before last holds is taken back once nothing else holds
//! it, and brought up to date by the diff of the map it was made from with
//! the new one.
use std::{any::Any, sync::Arc};

use imbl::ordmap::DiffItem;

use crate::{
    http_api::View,
    model::{DesiredState, ServiceMap, desired_state},
};

#[derive(Default)]
pub(super) struct Copies {
    /// The map the published view's copy was made from.
    published: Option<ServiceMap>,
    /// A copy nothing else holds, and the map it was made from.
    spare: Option<(ServiceMap, DesiredState)>,
}

impl Copies {
    /// A copy of every service of `services`.
    pub(super) fn make(&mut self, services: &ServiceMap) -> DesiredState {
        let Some((from, mut copy)) = self.spare.take() else {
            return desired_state(services);
        };
        for d in from.diff(services) {
            match d {
                DiffItem::Add(v, s) | DiffItem::Update { new: (v, s), .. } => {
                    copy.services.insert(*v, s.clone());
                }
                DiffItem::Remove(v, _) => drop(copy.services.remove(v)),
            }
        }
        debug_assert!(services.iter().eq(&copy.services), "a spare copy drifted");
        copy
    }

    /// The published view `old` was replaced by one whose copy was made
    /// from `made_from` (None: the catalog came with its own). `old`'s copy
    /// is kept if nothing else holds it; the rest is freed off the loop (an
    /// event that arrives meanwhile does not wait for it).
    pub(super) fn replaced(&mut self, old: Arc<View>, made_from: Option<ServiceMap>) {
        let from = std::mem::replace(&mut self.published, made_from);
        let rest: Box<dyn Any + Send> = match (from, Arc::try_unwrap(old)) {
            (Some(from), Ok(mut view)) => {
                match Arc::try_unwrap(std::mem::take(&mut view.catalog)) {
                    Ok(mut catalog) => {
                        self.spare = Some((from, std::mem::take(&mut catalog.services)));
                        Box::new((view, catalog))
                    }
                    Err(catalog) => Box::new((view, catalog)),
                }
            }
            (_, Ok(view)) => Box::new(view),
            (_, Err(old)) => Box::new(old),
        };
        tokio::task::spawn_blocking(move || drop(rest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Catalog, Proto, ServiceSpec, Vip};

    fn map(weights: &[(u8, u32)]) -> ServiceMap {
        let spec = |w| ServiceSpec {
            backends: [("10.0.0.1:80".parse().unwrap(), w)].into(),
            ..Default::default()
        };
        let vip = |i| Vip {
            addr: format!("11.0.0.{i}:80").parse().unwrap(),
            proto: Proto::Tcp,
        };
        weights.iter().map(|(i, w)| (vip(*i), spec(*w))).collect()
    }

    fn view(services: DesiredState) -> Arc<View> {
        let catalog = Catalog {
            services,
            ..Default::default()
        };
        Arc::new(View::new(
            Arc::new(catalog),
            Default::default(),
            Default::default(),
            None,
        ))
    }

    #[tokio::test]
    async fn a_copy_nothing_holds_is_brought_up_to_date() {
        let mut c = Copies::default();
        let (one, two, three) = (
            map(&[(1, 1), (2, 1)]),
            map(&[(1, 0), (3, 1)]),
            map(&[(3, 2)]),
        );
        let first = view(c.make(&one));
        c.replaced(Arc::new(View::default()), Some(one.clone()));
        let second = view(c.make(&two));
        c.replaced(first, Some(two.clone()));
        assert!(c.spare.is_some(), "the first view's copy, held by nothing");
        assert_eq!(c.make(&three), desired_state(&three));
        // A view someone still reads is left alone.
        let reader = second.clone();
        c.replaced(second, Some(three.clone()));
        assert!(c.spare.is_none());
        assert_eq!(c.make(&one), desired_state(&one));
        drop(reader);
    }
}
