//! `/v2/apps` bodies → per-app [`AppPart`]s, one app at a time.
//!
//! The list is walked element by element: the body is split into each app's
//! text as it arrives ([`AppsSplitter`]); each app is parsed once, from that
//! slice, into its typed form, turned into its part of the catalog and
//! dropped before the next one is read, so a 10,000-app body never exists as
//! 10,000 decoded apps at once (nor as a `serde_json::Value` tree, ~10x the
//! body). An app that does not fit the types is decoded again through
//! `Value` by [`apps::app_from_value`], which names the bad field; that app
//! is skipped with a warning, the rest stay. The same walk runs over a byte
//! slice, a reader, or the HTTP body's chunks as they arrive (see
//! `client::MarathonClient::refresh_app_set`), and refreshes a
//! set in place: each decoded app replaces its old part at once, so a re-read
//! never holds two copies of the cluster (only of the apps that changed, kept
//! to undo a refresh that fails: a failed read leaves the set as it was and
//! frees what it decoded).
//!
//! A set made with [`Keep::ServicesOnly`] ([`AppSet::keeping`]) makes no
//! task record in a full read and drops those of a part it is handed.
//!
//! The parts live in an [`IncrementalCatalog`]: the catalog of the set is
//! kept up to date part by part ([`AppSet::update_catalog`]), so an event
//! that re-reads one app costs that app, not the cluster.
use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    io::Read,
    sync::Arc,
};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{error::Category, value::RawValue};

use super::{
    apps::{self, App},
    parse::{AppPart, IncrementalCatalog, Keep, ParseError, Parsed, Warning, catalog_with_hosts},
    pod_part::pod_part,
    pods::{self, PodStatus},
    split::{AppSink, AppsSplitter},
};

/// How much of a body [`AppSet::refresh_from`] reads at a time.
const READ_PIECE: usize = 64 << 10;

/// Fewest bytes [`AppSet::refresh_from_pieces`] hands the splitter at a
/// time: smaller chunks are joined first. An app cut by a piece's end is
/// parsed partly, then scanned and parsed again; with 8 KiB pieces that
/// was a fifth more instructions a read than with 512 KiB ones (5 KB apps,
/// see BENCHMARKS.md), and hyper's reads start at 8 KiB.
const MIN_PIECE: usize = 256 << 10;
use crate::{hosts::HostTable, naming::VipAllocator};

/// Where a part sits in the set: apps and pods share Marathon's id space but
/// are kept apart (each list is refreshed on its own); apps sort first, the
/// order the catalog takes them in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartKey {
    App(Arc<str>),
    Pod(Arc<str>),
}

impl PartKey {
    fn app(id: &str) -> PartKey {
        PartKey::App(Arc::from(id))
    }

    fn pod(id: &str) -> PartKey {
        PartKey::Pod(Arc::from(id))
    }

    fn is_app(&self) -> bool {
        matches!(self, PartKey::App(_))
    }
}

/// Every app of one `/v2/apps` answer, as catalog parts keyed by app id,
/// and every pod of one `/v2/pods/::status` answer, the same way.
#[derive(Clone, Debug, Default)]
pub struct AppSet {
    /// Apps and pods, merged into their catalog change by change.
    parts: IncrementalCatalog<PartKey>,
    apps: usize,
    /// List entries skipped whole (no usable id, not an object, bad field).
    skipped: Vec<Warning>,
    pods_skipped: Vec<Warning>,
    /// A refresh broke off: the parts mix two reads, and the next complete
    /// refresh must report a change whatever it finds.
    dirty: bool,
    /// Whether the parts hold their tasks' records.
    keep: Keep,
}

impl AppSet {
    /// An empty set whose parts keep what `keep` says (a default set keeps
    /// the records).
    pub fn keeping(keep: Keep) -> AppSet {
        AppSet {
            keep,
            ..AppSet::default()
        }
    }

    /// What the parts keep.
    pub fn keep(&self) -> Keep {
        self.keep
    }

    /// The catalog of every app (named VIPs get their addresses from `alloc`),
    /// built whole from the parts.
    pub fn catalog(&self, alloc: &mut VipAllocator) -> Result<Parsed, ParseError> {
        self.catalog_with(alloc, &HostTable::default())
    }

    /// [`Self::catalog`] with agents known by name looked up in `hosts`.
    pub fn catalog_with(
        &self,
        alloc: &mut VipAllocator,
        hosts: &HostTable,
    ) -> Result<Parsed, ParseError> {
        let skipped = self.skipped_warnings();
        catalog_with_hosts(self.parts.parts(), &skipped, alloc, hosts)
    }

    /// The same catalog as [`Self::catalog_with`], brought up to date from
    /// the last one by what changed since (a full build while an agent is
    /// known by name). Its services are in `Parsed::services` only
    /// (`catalog.services` is left empty; the caller copies them once the
    /// maps serve them).
    pub fn update_catalog(
        &mut self,
        alloc: &mut VipAllocator,
        hosts: &HostTable,
    ) -> Result<Parsed, ParseError> {
        let mut p = self.parts.catalog_map_with(alloc, hosts)?;
        let mut warnings = self.skipped_warnings();
        warnings.append(&mut p.warnings);
        p.warnings = warnings;
        Ok(p)
    }

    fn skipped_warnings(&self) -> Vec<Warning> {
        self.skipped
            .iter()
            .chain(&self.pods_skipped)
            .cloned()
            .collect()
    }

    /// Puts one app's fresh read in place of the old one (`None`: the app is
    /// gone). False if that changed nothing (an event about a change already
    /// read, or one that does not touch what the catalog holds). The part
    /// is kept as the set keeps parts (see [`AppSet::keeping`]).
    pub fn replace(&mut self, id: &str, app: Option<OneApp>) -> bool {
        let app = app.map(|a| a.kept(self.keep));
        let changed = replace_in(&mut self.parts, &mut self.skipped, PartKey::app(id), app);
        self.count_apps();
        changed || self.dirty
    }

    /// [`Self::replace`] for a pod (`GET /v2/pods/{id}::status`).
    pub fn replace_pod(&mut self, id: &str, pod: Option<OneApp>) -> bool {
        let pod = pod.map(|p| p.kept(self.keep));
        replace_in(
            &mut self.parts,
            &mut self.pods_skipped,
            PartKey::pod(id),
            pod,
        ) || self.dirty
    }

    /// True if the last reads knew `id` as a pod (listed or skipped).
    pub fn is_pod(&self, id: &str) -> bool {
        self.parts.get(&PartKey::pod(id)).is_some()
            || self
                .pods_skipped
                .iter()
                .any(|w| w.app_id.as_deref() == Some(id))
    }

    /// Makes the pods equal to a whole `GET /v2/pods/::status` body (a list
    /// of pod statuses); true if anything changed. On an error nothing
    /// changes but the dirty flag (the next complete refresh reports a
    /// change).
    pub fn refresh_pods_from_slice(&mut self, body: &[u8]) -> Result<bool, ParseError> {
        let list: Vec<Box<RawValue>> = match serde_json::from_slice(body) {
            Ok(l) => l,
            Err(e) => {
                self.dirty = true;
                return Err(ParseError::Pods(e));
            }
        };
        let mut pods: BTreeMap<PartKey, AppPart> = BTreeMap::new();
        let mut skipped = Vec::new();
        for (i, raw) in list.iter().enumerate() {
            match decode_pod(raw.get(), || format!("pods[{i}]"), self.keep) {
                OneApp::Part(p) => match pods.get_mut(&PartKey::pod(p.app_id())) {
                    // Listed twice (Marathon never does): one pod declaring both.
                    Some(first) => first.absorb(p),
                    None => {
                        pods.insert(PartKey::pod(p.app_id()), p);
                    }
                },
                OneApp::Skipped(w) => skipped.push(w),
            }
        }
        let changed = self.set_pods(pods) || skipped != self.pods_skipped || self.dirty;
        self.pods_skipped = skipped;
        Ok(changed)
    }

    /// The pods become `pods`; true if that changed any.
    fn set_pods(&mut self, pods: BTreeMap<PartKey, AppPart>) -> bool {
        let gone: Vec<PartKey> = self
            .parts
            .keys()
            .filter(|k| !k.is_app() && !pods.contains_key(*k))
            .cloned()
            .collect();
        let mut changed = false;
        for k in gone {
            changed |= self.parts.swap(k, None).is_some();
        }
        for (k, p) in pods {
            changed |= self.parts.swap(k, Some(p)).is_some();
        }
        changed
    }

    /// Marathon has no pods (it answered 404 to `/v2/pods/::status`: a
    /// version without pods); true if that removed any.
    pub fn clear_pods(&mut self) -> bool {
        let had_skipped = !self.pods_skipped.is_empty();
        self.pods_skipped.clear();
        self.set_pods(BTreeMap::new()) || had_skipped
    }

    /// After a failed refresh (however it failed): the next complete one
    /// reports a change.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Same apps, pods and skipped entries (whatever the dirty flags say).
    pub fn same_content(&self, other: &AppSet) -> bool {
        self.parts.keys().eq(other.parts.keys())
            && self.parts.parts().eq(other.parts.parts())
            && self.skipped == other.skipped
            && self.pods_skipped == other.pods_skipped
    }

    pub fn contains(&self, id: &str) -> bool {
        self.parts.get(&PartKey::app(id)).is_some()
    }

    /// How many apps (pods not counted).
    pub fn len(&self) -> usize {
        self.apps
    }

    pub fn is_empty(&self) -> bool {
        self.apps == 0
    }

    fn count_apps(&mut self) {
        self.apps = self.parts.keys().take_while(|k| k.is_app()).count();
    }

    /// Makes the set equal to a whole `GET /v2/apps?embed=apps.tasks` body
    /// read from `reader` (blocking reads: run it off the async runtime).
    /// True if anything changed. On an error the set is put back as it was
    /// (what the failed read decoded is dropped) and marked dirty, so the
    /// next complete refresh reports a change.
    pub fn refresh_from(&mut self, mut reader: impl Read) -> Result<bool, ParseError> {
        let mut buf = vec![0; READ_PIECE];
        let pieces = std::iter::from_fn(move || match reader.read(&mut buf) {
            Ok(0) => None,
            Ok(n) => Some(Ok(buf[..n].to_vec())),
            Err(e) => Some(Err(e)),
        });
        self.refresh_joining(pieces, 0)
    }

    /// [`Self::refresh_from`] over a body in memory.
    pub fn refresh_from_slice(&mut self, body: &[u8]) -> Result<bool, ParseError> {
        self.refresh_joining(std::iter::once(Ok(body)), 0)
    }

    /// [`Self::refresh_from`] over the body's pieces as they arrive (an
    /// error ends the read as a failed one); pieces under [`MIN_PIECE`] are
    /// joined first.
    pub fn refresh_from_pieces<B: AsRef<[u8]>>(
        &mut self,
        pieces: impl IntoIterator<Item = std::io::Result<B>>,
    ) -> Result<bool, ParseError> {
        self.refresh_joining(pieces, MIN_PIECE)
    }

    /// The refresh, pieces shorter than `min_piece` joined before the
    /// splitter sees them (0: each as it comes).
    fn refresh_joining<B: AsRef<[u8]>>(
        &mut self,
        pieces: impl IntoIterator<Item = std::io::Result<B>>,
        min_piece: usize,
    ) -> Result<bool, ParseError> {
        let mut r = Refresh {
            set: self,
            seen: HashMap::new(),
            skipped: Vec::new(),
            changed: false,
            undo: HashMap::new(),
            added: Vec::new(),
        };
        let walked = r.walk(pieces, min_piece);
        let result = match walked {
            Ok(()) => Ok(r.finish()),
            Err(e) => {
                r.undo();
                Err(classify(e))
            }
        };
        self.count_apps();
        result
    }
}

/// A refresh in progress.
struct Refresh<'s> {
    set: &'s mut AppSet,
    /// Apps this read listed so far; true for those it added.
    seen: HashMap<PartKey, bool>,
    skipped: Vec<Warning>,
    changed: bool,
    /// What each app this read replaced held before it, to put back if the
    /// read fails.
    undo: HashMap<PartKey, AppPart>,
    /// Apps this read added, to take out if it fails (a key each: a first
    /// read adds every app).
    added: Vec<PartKey>,
}

impl Refresh<'_> {
    /// Splits the body into apps and adds each; then checks that the rest
    /// of the body (the skeleton, see [`AppsSplitter`]) is `{"apps": [...]}`.
    /// Pieces shorter than `min_piece` are joined first (a long one is fed
    /// as it is, uncopied, once what was joined before it is fed).
    fn walk<B: AsRef<[u8]>>(
        &mut self,
        pieces: impl IntoIterator<Item = std::io::Result<B>>,
        min_piece: usize,
    ) -> Result<(), serde_json::Error> {
        let mut split = AppsSplitter::default();
        let mut joined = Vec::new();
        for piece in pieces {
            let piece = piece.map_err(serde_json::Error::io)?;
            let piece = piece.as_ref();
            if piece.len() >= min_piece {
                if !joined.is_empty() {
                    split.feed_to(&joined, self)?;
                    joined.clear();
                }
                split.feed_to(piece, self)?;
                continue;
            }
            joined.extend_from_slice(piece);
            if joined.len() >= min_piece {
                split.feed_to(&joined, self)?;
                joined.clear();
            }
        }
        split.feed_to(&joined, self)?;
        let skeleton = split.finish();
        let mut de = serde_json::Deserializer::from_slice(&skeleton);
        ListSeed.deserialize(&mut de)?;
        de.end()
    }

    /// One app's text; an error only if it is not JSON.
    fn add(&mut self, index: usize, text: &[u8]) -> Result<(), serde_json::Error> {
        match decode_app(text, || format!("apps[{index}]"), self.set.keep)? {
            OneApp::Part(part) => self.keep(part),
            OneApp::Skipped(w) => self.skipped.push(w),
        }
        Ok(())
    }

    /// One app's part, in the set.
    fn keep(&mut self, part: AppPart) {
        let key = PartKey::app(part.app_id());
        let parts = &mut self.set.parts;
        if let Some(&added) = self.seen.get(&key) {
            // Listed twice (Marathon never does): one app declaring both.
            if let Some(first) = parts.get(&key).cloned() {
                if !added {
                    self.undo
                        .entry(key.clone())
                        .or_insert_with(|| first.clone());
                }
                let mut both = first;
                both.absorb(part);
                parts.replace(key, Some(both));
            }
            self.changed = true;
            return;
        }
        let swapped = parts.swap(key.clone(), Some(part));
        self.seen.insert(key.clone(), matches!(swapped, Some(None)));
        match swapped {
            Some(Some(old)) => drop(self.undo.insert(key, old)),
            Some(None) => self.added.push(key),
            None => return,
        }
        self.changed = true;
    }

    /// The read failed: every app it touched gets its old part back (or
    /// leaves), and the set is dirty.
    fn undo(self) {
        for key in self.added {
            self.set.parts.replace(key, None);
        }
        for (key, old) in self.undo {
            self.set.parts.replace(key, Some(old));
        }
        self.set.dirty = true;
    }

    /// The list is complete: apps it did not name are gone.
    fn finish(self) -> bool {
        let Refresh {
            set,
            seen,
            skipped,
            mut changed,
            ..
        } = self;
        let gone: Vec<PartKey> = set
            .parts
            .keys()
            .filter(|k| k.is_app() && !seen.contains_key(*k))
            .cloned()
            .collect();
        changed |= !gone.is_empty() || set.skipped != skipped || set.dirty;
        for k in gone {
            set.parts.replace(k, None);
        }
        set.skipped = skipped;
        set.dirty = false;
        changed
    }
}

impl AppSink for Refresh<'_> {
    type Error = serde_json::Error;

    /// The app read straight from the piece, with no scan of its text
    /// first: the same parse as [`decode_app`]'s of that text, so only an
    /// app that reads as a part is taken here; anything else (cut by the
    /// piece's end, a bad field, not JSON) is left to the scan and
    /// [`decode_app`], which tell them apart as before.
    fn whole(&mut self, _: usize, rest: &[u8]) -> Option<usize> {
        let mut apps = serde_json::Deserializer::from_slice(rest).into_iter::<App>();
        let part = part_of(apps.next()?.ok()?, self.set.keep)?;
        self.keep(part);
        Some(apps.byte_offset())
    }

    fn app(&mut self, index: usize, text: &[u8]) -> Result<(), serde_json::Error> {
        self.add(index, text)
    }
}

/// Puts one app's (or pod's) fresh read in place of the old one in `parts`
/// and `skipped`; false if that changed nothing.
fn replace_in(
    parts: &mut IncrementalCatalog<PartKey>,
    skipped: &mut Vec<Warning>,
    key: PartKey,
    one: Option<OneApp>,
) -> bool {
    let id = match &key {
        PartKey::App(id) | PartKey::Pod(id) => id.clone(),
    };
    let mine = |w: &Warning| w.app_id.as_deref() == Some(&*id);
    let old_skip = skipped.iter().position(mine);
    match one {
        Some(OneApp::Part(p)) => {
            let same = old_skip.is_none() && parts.get(&key) == Some(&p);
            if let Some(i) = old_skip {
                skipped.remove(i);
            }
            parts.replace(key, Some(p));
            !same
        }
        // One that no longer decodes is skipped, as in a full read.
        Some(OneApp::Skipped(w)) => {
            let same = parts.get(&key).is_none() && old_skip.is_some_and(|i| skipped[i] == w);
            parts.replace(key, None);
            skipped.retain(|old| !mine(old));
            skipped.push(w);
            !same
        }
        None => {
            let had = parts.swap(key, None).is_some() || old_skip.is_some();
            skipped.retain(|old| !mine(old));
            had
        }
    }
}

/// One app (or pod), decoded: its catalog part, or why it was skipped.
#[derive(Clone, Debug)]
pub enum OneApp {
    Part(AppPart),
    Skipped(Warning),
}

impl OneApp {
    /// The part as a set keeping `keep` holds it ([`AppPart::kept`]).
    fn kept(self, keep: Keep) -> OneApp {
        match self {
            OneApp::Part(p) => OneApp::Part(p.kept(keep)),
            skipped => skipped,
        }
    }
}

/// The part of an app that decoded, if it takes one (an app needs an
/// id): the fast path of [`decode_app`] and of an app read whole from a
/// piece ([`AppSink::whole`]), one rule for both.
fn part_of(app: App, keep: Keep) -> Option<AppPart> {
    (!app.id.trim().is_empty()).then(|| AppPart::keeping(&app, keep))
}

/// Decodes one app's JSON text, parsed once unless it does not fit the
/// types; an error only if the text is not JSON. `at` names the app's
/// place for messages; only a skipped app needs it.
fn decode_app(
    text: &[u8],
    at: impl Fn() -> String,
    keep: Keep,
) -> Result<OneApp, serde_json::Error> {
    match serde_json::from_slice::<App>(text) {
        Ok(app) => {
            if let Some(part) = part_of(app, keep) {
                return Ok(OneApp::Part(part));
            }
        }
        Err(e) if e.classify() != Category::Data => return Err(e),
        Err(_) => {}
    }
    // Slow path, only for apps that do not fit: find the field to blame.
    let value: serde_json::Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) if e.classify() != Category::Data => return Err(e),
        Err(e) => {
            return Ok(OneApp::Skipped(Warning {
                pod: false,
                app_id: None,
                what: format!("{}: {e}; app skipped", at()),
            }));
        }
    };
    Ok(match apps::app_from_value(&value) {
        Ok(app) => OneApp::Part(AppPart::keeping(&app, keep)),
        Err(bad) => {
            let where_ = match (&bad.app_id, bad.path.is_empty()) {
                (Some(_), false) => format!("{}: ", bad.path),
                (Some(_), true) => String::new(),
                (None, false) => format!("{}.{}: ", at(), bad.path),
                (None, true) => format!("{}: ", at()),
            };
            OneApp::Skipped(Warning {
                pod: false,
                app_id: bad.app_id,
                what: format!("{where_}{}; app skipped", bad.msg),
            })
        }
    })
}

/// Decodes one pod status's JSON text, as [`decode_app`] does an app.
fn decode_pod(text: &str, at: impl Fn() -> String, keep: Keep) -> OneApp {
    if let Ok(pod) = serde_json::from_str::<PodStatus>(text)
        && !pod.id.trim().is_empty()
    {
        return OneApp::Part(pod_part(&pod, keep));
    }
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return OneApp::Skipped(Warning {
                pod: true,
                app_id: None,
                what: format!("{}: {e}; pod skipped", at()),
            });
        }
    };
    match pods::pod_from_value(&value) {
        Ok(pod) => OneApp::Part(pod_part(&pod, keep)),
        Err(bad) => {
            let where_ = match (&bad.pod_id, bad.path.is_empty()) {
                (Some(_), false) => format!("{}: ", bad.path),
                (Some(_), true) => String::new(),
                (None, false) => format!("{}.{}: ", at(), bad.path),
                (None, true) => format!("{}: ", at()),
            };
            OneApp::Skipped(Warning {
                pod: true,
                app_id: bad.pod_id,
                what: format!("{where_}{}; pod skipped", bad.msg),
            })
        }
    }
}

/// A whole `GET /v2/pods/::status` body, into a new set of pods only.
pub fn decode_pods(body: &[u8]) -> Result<AppSet, ParseError> {
    let mut set = AppSet::default();
    set.refresh_pods_from_slice(body)?;
    Ok(set)
}

/// A `GET /v2/pods/{id}::status` body: one pod status, which must carry the
/// id that was asked for (records kept, as [`decode_one_app`]'s).
pub fn decode_one_pod(body: &[u8], id: &str) -> Result<OneApp, ParseError> {
    let raw: Box<RawValue> = serde_json::from_slice(body).map_err(ParseError::Pods)?;
    let one = decode_pod(raw.get(), || "pod".to_owned(), Keep::Records);
    let got = match &one {
        OneApp::Part(p) => Some(p.app_id()),
        OneApp::Skipped(w) => w.app_id.as_deref(),
    };
    if got.is_some_and(|g| g != id) {
        return Err(ParseError::Pods(de::Error::custom(format!(
            "asked for pod {id}, the answer is pod {}",
            got.unwrap_or_default()
        ))));
    }
    Ok(one)
}

fn classify(e: serde_json::Error) -> ParseError {
    match e.classify() {
        Category::Data => ParseError::Shape(e),
        Category::Io | Category::Syntax | Category::Eof => ParseError::Json(e),
    }
}

/// A whole `GET /v2/apps?embed=apps.tasks` body, into a new set.
pub fn decode_apps(body: &[u8]) -> Result<AppSet, ParseError> {
    let mut set = AppSet::default();
    set.refresh_from_slice(body)?;
    Ok(set)
}

/// A `GET /v2/apps/{id}?embed=app.tasks` body: `{"app": {...}}`. The app must
/// carry the id that was asked for (a proxy answering for another app must
/// not replace this one). Its part has its tasks' records: a set that keeps
/// none drops them as it takes the part ([`AppSet::replace`]; five records
/// an event, against the full read's 50,000).
pub fn decode_one_app(body: &[u8], id: &str) -> Result<OneApp, ParseError> {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        app: &'a RawValue,
    }
    let b: Body = serde_json::from_slice(body).map_err(classify)?;
    let one =
        decode_app(b.app.get().as_bytes(), || "app".to_owned(), Keep::Records).map_err(classify)?;
    let got = match &one {
        OneApp::Part(p) => Some(p.app_id()),
        OneApp::Skipped(w) => w.app_id.as_deref(),
    };
    if got.is_some_and(|g| g != id) {
        return Err(ParseError::Shape(de::Error::custom(format!(
            "asked for app {id}, the answer is app {}",
            got.unwrap_or_default()
        ))));
    }
    Ok(one)
}

/// `{"apps": [...], anything else}`: the skeleton of the body, each app's
/// text already taken out (see [`AppsSplitter`]).
struct ListSeed;

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("{\"apps\": [...]}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "apps" {
                if found {
                    return Err(de::Error::duplicate_field("apps"));
                }
                found = true;
                map.next_value_seed(Elements)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if found {
            Ok(())
        } else {
            Err(de::Error::missing_field("apps"))
        }
    }
}

/// The `apps` array of the skeleton (its elements are placeholders).
struct Elements;

impl<'de> DeserializeSeed<'de> for Elements {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elements {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of apps")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIS_HOST: &str = include_str!("../../tests/fixtures/marathon/apps_redis_host.json");
    const BRIDGE: &str = include_str!("../../tests/fixtures/marathon/apps_bridge_docker.json");
    const MALFORMED: &str = include_str!("../../tests/fixtures/marathon/apps_malformed.json");

    fn catalog(set: &AppSet) -> Parsed {
        set.catalog(&mut VipAllocator::new()).unwrap()
    }

    #[test]
    fn slice_and_reader_decode_the_same() {
        for body in [REDIS_HOST, BRIDGE, MALFORMED] {
            let a = decode_apps(body.as_bytes()).unwrap();
            // A reader that hands out 7 bytes at a time.
            struct Trickle<'a>(&'a [u8]);
            impl Read for Trickle<'_> {
                fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                    let n = buf.len().min(7).min(self.0.len());
                    buf[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let mut b = AppSet::default();
            b.refresh_from(Trickle(body.as_bytes())).unwrap();
            assert_eq!(catalog(&a), catalog(&b));
        }
    }

    /// The split-then-parse read accepts exactly the bodies that are JSON,
    /// and decodes what it accepts as a parse of the whole would: bodies
    /// mutated at random (a byte dropped, a structural byte put in, a run
    /// repeated), each also read from a reader a few bytes at a time.
    #[test]
    fn mutated_bodies_are_refused_or_decoded_as_a_whole_parse_would() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(16);
        let mut accepted = 0;
        for base in [REDIS_HOST, BRIDGE, MALFORMED] {
            for _ in 0..400 {
                let mut body = base.as_bytes().to_vec();
                for _ in 0..rng.random_range(1..3) {
                    let at = rng.random_range(0..body.len());
                    match rng.random_range(0..3) {
                        0 => drop(body.remove(at)),
                        1 => body.insert(at, b"{}[]\",: 0\\"[rng.random_range(0..9)]),
                        _ => {
                            let end = (at + rng.random_range(1..40)).min(body.len());
                            let run = body[at..end].to_vec();
                            body.splice(at..at, run);
                        }
                    }
                }
                let json = serde_json::from_slice::<serde_json::Value>(&body);
                let got = decode_apps(&body);
                let mut by_reader = AppSet::default();
                let read = by_reader.refresh_joining(body.chunks(7).map(Ok), 0);
                assert_eq!(read.is_ok(), got.is_ok());
                let Ok(value) = json else {
                    assert!(got.is_err(), "{}", String::from_utf8_lossy(&body));
                    continue;
                };
                let set = match got {
                    Err(ParseError::Json(e)) => panic!("{e}: {}", String::from_utf8_lossy(&body)),
                    Err(_) => continue,
                    Ok(set) => set,
                };
                accepted += 1;
                let whole = decode_apps(&serde_json::to_vec(&value).unwrap()).unwrap();
                assert_eq!(catalog(&set), catalog(&whole));
                assert_eq!(catalog(&by_reader), catalog(&whole));
            }
        }
        assert!(accepted > 100, "only {accepted} mutated bodies decoded");
    }

    /// Pieces joined up to `MIN_PIECE`, long ones fed as they come, in any
    /// mix: the same set as the body read whole, and a body cut short is
    /// still refused.
    #[test]
    fn joined_pieces_decode_as_the_whole_body() {
        let apps: Vec<String> = (0..2400)
            .map(|i| {
                format!(
                    r#"{{"id": "/j/a{i}", "portDefinitions": [{{"port": 0, "labels": {{"VIP_0": "/j/a{i}:80"}}}}],
                    "tasks": [{{"id": "a{i}.1", "host": "10.0.{}.{}", "ports": [31000],
                    "state": "TASK_RUNNING", "stagedAt": "2026-12-07T09:00:00.000Z"}}]}}"#,
                    i / 250 % 250,
                    i % 250 + 1
                )
            })
            .collect();
        let body = format!(r#"{{"apps": [{}]}}"#, apps.join(", ")).into_bytes();
        assert!(body.len() > 2 * MIN_PIECE, "{} bytes", body.len());
        let whole = catalog(&decode_apps(&body).unwrap());
        let sizes = [7, MIN_PIECE + 3, 1000, MIN_PIECE - 1, 2, 70_000, 8192];
        let mut pieces = Vec::new();
        let mut rest = &body[..];
        for n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at((*n).min(rest.len()));
            pieces.push(piece);
            rest = after;
        }
        let mut set = AppSet::default();
        assert!(set.refresh_from_pieces(pieces.iter().map(Ok)).unwrap());
        assert_eq!(catalog(&set), whole);
        let mut small = AppSet::default();
        small
            .refresh_from_pieces(body.chunks(8192).map(Ok))
            .unwrap();
        assert_eq!(catalog(&small), whole);
        let cut = &body[..body.len() - 3];
        assert!(small.refresh_from_pieces(cut.chunks(8192).map(Ok)).is_err());
        assert!(small.same_content(&set));
    }

    #[test]
    fn a_refresh_replaces_in_place_and_says_whether_anything_changed() {
        let two = br#"{"apps": [
            {"id": "/a", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/a:80"}}],
             "tasks": [{"id": "a.1", "host": "10.0.0.1", "ports": [31000], "state": "TASK_RUNNING"}]},
            {"id": "/b", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/b:80"}}],
             "tasks": [{"id": "b.1", "host": "10.0.0.2", "ports": [31001], "state": "TASK_RUNNING"}]}]}"#;
        let mut set = AppSet::default();
        assert!(set.refresh_from_slice(two).unwrap(), "first read");
        assert!(!set.refresh_from_slice(two).unwrap(), "the same list again");
        // /b gone, /a's task moved.
        let one = br#"{"apps": [
            {"id": "/a", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/a:80"}}],
             "tasks": [{"id": "a.1", "host": "10.0.0.9", "ports": [31000], "state": "TASK_RUNNING"}]}]}"#;
        assert!(set.refresh_from_slice(one).unwrap());
        assert_eq!(set.len(), 1);
        assert!(!set.contains("/b"));
        let fresh = decode_apps(one).unwrap();
        assert_eq!(catalog(&set), catalog(&fresh));
        // A read that breaks off after replacing /a leaves the set dirty: the
        // next complete read reports a change even if it equals the mix.
        let cut = &two[..two.len() - 40];
        assert!(matches!(
            set.refresh_from_slice(cut).unwrap_err(),
            ParseError::Json(_)
        ));
        assert!(
            set.refresh_from_slice(two).unwrap(),
            "dirty: a change whatever it finds"
        );
        assert!(!set.refresh_from_slice(two).unwrap());
        assert_eq!(catalog(&set), catalog(&decode_apps(two).unwrap()));
    }

    /// Regression: a failed full read kept what it had decoded (new apps
    /// added, changed ones replaced: a cut 10,000-app body left memory
    /// doubled, see BENCHMARKS.md); now it leaves the set exactly as the last
    /// good read left it.
    #[test]
    fn a_failed_refresh_leaves_the_previous_set() {
        let two = br#"{"apps": [
            {"id": "/a", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/a:80"}}],
             "tasks": [{"id": "a.1", "host": "10.0.0.1", "ports": [31000], "state": "TASK_RUNNING"}]},
            {"id": "/b", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/b:80"}}],
             "tasks": [{"id": "b.1", "host": "10.0.0.2", "ports": [31001], "state": "TASK_RUNNING"}]},
            {"id": "/x", "instances": "bad"}]}"#;
        let mut set = AppSet::default();
        set.refresh_from_slice(two).unwrap();
        let before = set.clone();
        // /a changed, /c new, /a listed twice, then the body breaks off.
        let cut = br#"{"apps": [
            {"id": "/a", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/a:80"}}],
             "tasks": [{"id": "a.1", "host": "10.0.0.9", "ports": [31000], "state": "TASK_RUNNING"}]},
            {"id": "/c", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/c:80"}}],
             "tasks": [{"id": "c.1", "host": "10.0.0.3", "ports": [31002], "state": "TASK_RUNNING"}]},
            {"id": "/b", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/b:81"}}],
             "tasks": [{"id": "b.1", "host": "10.0.0.2", "ports": [31001], "state": "TASK_RUNNING"}]},
            {"id": "/b", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/b:82"}}],
             "tasks": [{"id": "b.2", "host": "10.0.0.4", "ports": [31001], "state": "TASK_RUNNING"}]},
            {"id": "/d", "#;
        assert!(set.refresh_from_slice(cut).is_err());
        assert!(set.same_content(&before), "the failed read left {set:?}");
        assert!(!set.contains("/c"));
        assert_eq!(catalog(&set), catalog(&before));
        // Dirty: the next good read reports a change even though it is the same.
        assert!(set.refresh_from_slice(two).unwrap());
    }

    /// The catalog kept up to date change by change is the one built whole
    /// from the same set, through full reads, app reads, pods, a failed
    /// read and its undo.
    #[test]
    fn the_kept_catalog_equals_a_full_build_after_every_change() {
        const PODS: &str = include_str!("../../tests/fixtures/marathon/pods_vips.json");
        let (mut kept, mut whole) = (VipAllocator::new(), VipAllocator::new());
        let mut set = AppSet::default();
        // `kept`: the catalog is brought up to date, not built whole (an
        // agent known by name makes it a full build).
        let mut check = |set: &mut AppSet, step: &str, kept_map: bool| {
            let mut a = set
                .update_catalog(&mut kept, &HostTable::default())
                .unwrap();
            assert_eq!(a.services.is_some(), kept_map, "after {step}");
            if let Some(services) = a.services.take() {
                a.catalog.services = crate::model::desired_state(&services);
            }
            assert_eq!(a, set.catalog(&mut whole).unwrap(), "after {step}");
        };
        set.refresh_from_slice(REDIS_HOST.as_bytes()).unwrap();
        check(&mut set, "the first read", true);
        set.refresh_from_slice(MALFORMED.as_bytes()).unwrap();
        check(&mut set, "a read with bad apps and an agent by name", false);
        set.refresh_from_slice(BRIDGE.as_bytes()).unwrap();
        check(&mut set, "a read of other apps", true);
        set.refresh_pods_from_slice(PODS.as_bytes()).unwrap();
        check(&mut set, "pods", true);
        let cut = &MALFORMED.as_bytes()[..MALFORMED.len() - 30];
        assert!(set.refresh_from_slice(cut).is_err());
        check(&mut set, "a failed read", true);
        let v: serde_json::Value = serde_json::from_str(REDIS_HOST).unwrap();
        let id = v["apps"][0]["id"].as_str().unwrap();
        let body = serde_json::json!({"app": v["apps"][0]}).to_string();
        assert!(set.replace(id, Some(decode_one_app(body.as_bytes(), id).unwrap())));
        check(&mut set, "one app read", true);
        assert!(set.replace(id, None));
        check(&mut set, "one app gone", true);
        assert!(set.clear_pods());
        check(&mut set, "pods gone", true);
    }

    #[test]
    fn an_app_listed_twice_declares_both() {
        let body = br#"{"apps": [
            {"id": "/a", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/a:80"}}],
             "tasks": [{"id": "a.1", "host": "10.0.0.1", "ports": [31000], "state": "TASK_RUNNING"}]},
            {"id": "/a", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/a:80"}}],
             "tasks": [{"id": "a.2", "host": "10.0.0.2", "ports": [31000], "state": "TASK_RUNNING"}]}]}"#;
        let p = catalog(&decode_apps(body).unwrap());
        assert_eq!(p.catalog.tasks.len(), 2);
        let backends: usize = p
            .catalog
            .services
            .services
            .values()
            .map(|s| s.backends.len())
            .sum();
        assert_eq!(backends, 2);
    }

    #[test]
    fn whole_body_errors_are_classified() {
        assert!(matches!(
            decode_apps(b"{\"apps\": [").unwrap_err(),
            ParseError::Json(_)
        ));
        assert!(matches!(
            decode_apps(b"[]").unwrap_err(),
            ParseError::Shape(_)
        ));
        assert!(matches!(
            decode_apps(b"{\"app\": []}").unwrap_err(),
            ParseError::Shape(_)
        ));
        assert!(matches!(
            decode_apps(b"{\"apps\": 1}").unwrap_err(),
            ParseError::Shape(_)
        ));
        assert!(matches!(
            decode_apps(b"{\"apps\": []} x").unwrap_err(),
            ParseError::Json(_)
        ));
        let e = decode_apps(b"{\"apps\": [], \"apps\": []}").unwrap_err();
        assert!(e.to_string().contains("duplicate field"), "{e}");
    }

    #[test]
    fn other_fields_are_ignored_and_bad_apps_skipped() {
        let body = br#"{"version": {"x": [1, 2]}, "apps": [
            {"id": "/a", "portDefinitions": [{"port": 0, "labels": {"VIP_0": "/a:80"}}],
             "tasks": [{"id": "a.1", "host": "10.0.0.1", "ports": [31000], "state": "TASK_RUNNING"}]},
            {"id": 7}, 3, {"id": "/b", "tasks": "nope"}]}"#;
        let set = decode_apps(body).unwrap();
        assert_eq!(set.len(), 1);
        let p = catalog(&set);
        assert_eq!(p.catalog.services.services.len(), 1);
        let w: Vec<String> = p.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("apps[1].id: "), "{w:?}");
        assert!(w[1].starts_with("apps[2]: "), "{w:?}");
        assert!(w[2].starts_with("app /b: tasks"), "{w:?}");
    }

    #[test]
    fn one_app_replaces_its_part() {
        let mut set = decode_apps(REDIS_HOST.as_bytes()).unwrap();
        let full = catalog(&set);
        let body = serde_json::json!({"app": serde_json::from_str::<serde_json::Value>(REDIS_HOST)
            .unwrap()["apps"][0]})
        .to_string();
        let id = serde_json::from_str::<serde_json::Value>(REDIS_HOST).unwrap()["apps"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        // The same app again: no change, the same catalog.
        assert!(!set.replace(&id, Some(decode_one_app(body.as_bytes(), &id).unwrap())));
        assert_eq!(catalog(&set), full);
        // Gone: its services and tasks leave.
        assert!(set.replace(&id, None));
        assert!(!set.replace(&id, None), "gone twice is no change");
        let gone = catalog(&set);
        assert!(gone.catalog.tasks.iter().all(|t| *t.app_id != *id));
        assert!(gone.catalog.services.services.len() < full.catalog.services.services.len());
        // An answer about another app is refused.
        let e = decode_one_app(body.as_bytes(), "/other").unwrap_err();
        assert!(e.to_string().contains("asked for app /other"), "{e}");
    }

    #[test]
    fn a_replaced_app_that_no_longer_decodes_is_skipped_with_its_warning() {
        let mut set = decode_apps(REDIS_HOST.as_bytes()).unwrap();
        let id = serde_json::from_str::<serde_json::Value>(REDIS_HOST).unwrap()["apps"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let body = serde_json::json!({"app": {"id": id, "tasks": 5}}).to_string();
        let one = decode_one_app(body.as_bytes(), &id).unwrap();
        assert!(matches!(one, OneApp::Skipped(_)));
        assert!(set.replace(&id, Some(one.clone())));
        assert!(!set.replace(&id, Some(one)), "the same bad app again");
        assert!(!set.contains(&id));
        let p = catalog(&set);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        // Gone: the warning goes.
        assert!(set.replace(&id, None));
        assert!(catalog(&set).warnings.is_empty());
    }
}
