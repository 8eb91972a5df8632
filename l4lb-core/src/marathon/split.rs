//! A `/v2/apps` body split into its apps' JSON texts as the bytes arrive,
//! without parsing them: each app is then parsed once, from a slice
//! (`serde_json`'s reader path reads a byte at a time and was most of a
//! full read's decode; copying each app out as a `RawValue` first meant
//! scanning it twice).
//!
//! The splitter only tracks nesting and strings. What is not an app's text
//! (the envelope: `{"apps": [`, commas, other fields) is kept as a skeleton
//! in which each app stands as `0`. The body is valid JSON exactly when the
//! skeleton is and every app's text is a JSON value (each `0` stands where
//! the app's text was), so validating both accepts and refuses the same
//! bodies as one parse of the whole: the caller does that with `serde_json`.
//! Nothing here is held beyond the skeleton and the app being read.
//!
//! An app whose text starts in a piece is first offered whole to the
//! reader ([`AppSink::whole`]): one that parses from there needs no scan of
//! its bytes here (the scan was a sixth of a full read's instructions, see
//! BENCHMARKS.md). Only an app that does not (cut by the piece's end, or not
//! an app that reads) is scanned, and its text handed out as above.

/// Where the splitter is between bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum In {
    /// Not in an app (in the envelope, or between apps).
    Envelope,
    /// In an app that is an object or array: it ends where the nesting
    /// returns to the list's.
    Nested,
    /// In an app that is a string.
    Text,
    /// In an app that is a number or a literal: it ends before the next
    /// space, comma or closing bracket.
    Scalar,
}

/// The splitter; feed it the body's pieces in order, then [`Self::finish`].
#[derive(Debug)]
pub struct AppsSplitter {
    at: In,
    /// Open `{`/`[` around the current byte, in the whole body.
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The body is an object (its first byte is `{`).
    object: bool,
    /// At depth 1 of the object, the next string is a key.
    expect_key: bool,
    /// The key being read at depth 1 (quotes included), while `in_key`.
    key: Vec<u8>,
    in_key: bool,
    /// The last key at depth 1 was `apps` and its value has not begun.
    apps_next: bool,
    /// The list of apps was entered (a second `apps` key is left to the
    /// skeleton, which refuses it).
    apps_seen: bool,
    /// Inside the list of apps (its elements sit at depth 2).
    in_list: bool,
    /// How many apps were handed out.
    count: usize,
    /// The current app's text so far, when it spans pieces.
    app: Vec<u8>,
    skeleton: Vec<u8>,
    /// The first byte was seen (leading white space skipped).
    started: bool,
}

impl Default for AppsSplitter {
    fn default() -> Self {
        AppsSplitter {
            at: In::Envelope,
            depth: 0,
            in_string: false,
            escaped: false,
            object: false,
            expect_key: false,
            key: Vec::new(),
            in_key: false,
            apps_next: false,
            apps_seen: false,
            in_list: false,
            count: 0,
            app: Vec::new(),
            skeleton: Vec::new(),
            started: false,
        }
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Who takes the apps of a body from [`AppsSplitter::feed_to`].
pub trait AppSink {
    type Error;
    /// An object app begins at `rest[0]` (`rest` runs to the piece's end):
    /// if it reads whole from there, take it and say how many bytes it
    /// took. None leaves it to the splitter, which hands its text to
    /// [`Self::app`] once it ends.
    fn whole(&mut self, index: usize, rest: &[u8]) -> Option<usize>;
    /// One app's text (an error stops the read).
    fn app(&mut self, index: usize, text: &[u8]) -> Result<(), Self::Error>;
}

/// Every app scanned, none read whole: [`AppsSplitter::feed`]'s sink.
struct Texts<F>(F);

impl<E, F: FnMut(usize, &[u8]) -> Result<(), E>> AppSink for Texts<F> {
    type Error = E;
    fn whole(&mut self, _: usize, _: &[u8]) -> Option<usize> {
        None
    }
    fn app(&mut self, index: usize, text: &[u8]) -> Result<(), E> {
        (self.0)(index, text)
    }
}

impl AppsSplitter {
    /// Reads the next piece of the body; calls `app(index, text)` for each
    /// app whose text completes in it. An error from `app` stops the read.
    pub fn feed<E>(
        &mut self,
        piece: &[u8],
        app: impl FnMut(usize, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.feed_to(piece, &mut Texts(app))
    }

    /// [`Self::feed`], offering each object app that starts in the piece
    /// to `sink` whole first.
    pub fn feed_to<S: AppSink>(&mut self, piece: &[u8], sink: &mut S) -> Result<(), S::Error> {
        let mut i = 0;
        // Where the current run of envelope (or app) bytes began in `piece`.
        let mut from = 0;
        while i < piece.len() {
            match self.at {
                In::Envelope => {
                    if self.envelope_byte(piece[i]) {
                        self.skeleton.extend_from_slice(&piece[from..i]);
                        self.skeleton.extend_from_slice(b"0 ");
                        from = i;
                        if let Some(n) = self.read_whole(&piece[i..], sink) {
                            i += n;
                            from = i;
                            continue;
                        }
                    }
                    i += 1;
                }
                In::Nested | In::Text | In::Scalar => {
                    let end = self.app_end(piece, &mut i);
                    match end {
                        Some(end) => {
                            let text = if self.app.is_empty() {
                                &piece[from..end]
                            } else {
                                self.app.extend_from_slice(&piece[from..end]);
                                &self.app[..]
                            };
                            let index = self.count;
                            self.count += 1;
                            self.at = In::Envelope;
                            let r = sink.app(index, text);
                            self.app.clear();
                            r?;
                            from = end;
                        }
                        None => {
                            self.app.extend_from_slice(&piece[from..]);
                            return Ok(());
                        }
                    }
                }
            }
        }
        if self.at == In::Envelope {
            self.skeleton.extend_from_slice(&piece[from..]);
        } else {
            self.app.extend_from_slice(&piece[from..]);
        }
        Ok(())
    }

    /// An object app begins at `rest[0]` ([`Self::app_begins`] entered
    /// it): offered to `sink` whole; if it takes it, the app is over and its
    /// length is returned.
    fn read_whole<S: AppSink>(&mut self, rest: &[u8], sink: &mut S) -> Option<usize> {
        if self.at != In::Nested || rest[0] != b'{' {
            return None;
        }
        let n = sink.whole(self.count, rest)?;
        debug_assert!((1..=rest.len()).contains(&n), "{n} of {}", rest.len());
        self.count += 1;
        self.depth -= 1;
        self.at = In::Envelope;
        Some(n.clamp(1, rest.len()))
    }

    /// The body ended: the skeleton, for the caller to validate. An app
    /// still open (a body cut short) leaves the list open in it, so it does
    /// not validate.
    pub fn finish(self) -> Vec<u8> {
        self.skeleton
    }

    /// One envelope byte; true if an app begins at it.
    fn envelope_byte(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.in_key {
                self.key.push(b);
            }
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.in_key {
                    self.in_key = false;
                    self.apps_next = !self.apps_seen
                        && serde_json::from_slice::<String>(&self.key).is_ok_and(|k| k == "apps");
                }
            }
            return false;
        }
        if is_space(b) {
            return false;
        }
        if !self.started {
            self.started = true;
            self.object = b == b'{';
        }
        if self.in_list && self.depth == 2 && !matches!(b, b',' | b']' | b'}') {
            return self.app_begins(b);
        }
        match b {
            b'"' => {
                self.in_string = true;
                if self.object && self.depth == 1 && self.expect_key {
                    self.expect_key = false;
                    self.in_key = true;
                    self.key.clear();
                    self.key.push(b);
                }
            }
            b'{' | b'[' => {
                if self.object && self.depth == 1 && self.apps_next && b == b'[' {
                    self.in_list = true;
                    self.apps_seen = true;
                }
                self.depth += 1;
                if self.depth == 1 && b == b'{' {
                    self.expect_key = true;
                }
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth < 2 {
                    self.in_list = false;
                }
            }
            b',' if self.depth == 1 => self.expect_key = true,
            _ => {}
        }
        if self.depth == 1 && b != b':' && b != b'"' {
            self.apps_next = false;
        }
        false
    }

    /// The first byte of an app.
    fn app_begins(&mut self, b: u8) -> bool {
        self.at = match b {
            b'{' | b'[' => {
                self.depth += 1;
                In::Nested
            }
            b'"' => {
                self.in_string = true;
                In::Text
            }
            _ => In::Scalar,
        };
        true
    }

    /// Moves `i` through the current app (its first byte was read by
    /// [`Self::app_begins`]); Some(end) if the app ends in `piece`
    /// (exclusive).
    fn app_end(&mut self, piece: &[u8], i: &mut usize) -> Option<usize> {
        if self.at == In::Scalar {
            let rest = &piece[*i..];
            let n = rest
                .iter()
                .position(|&b| is_space(b) || matches!(b, b',' | b']' | b'}'));
            *i += n.unwrap_or(rest.len());
            return n.map(|_| *i);
        }
        // Locals, not fields, in the loop over most of the body's bytes.
        let (mut depth, mut in_string, mut escaped) = (self.depth, self.in_string, self.escaped);
        let text = self.at == In::Text;
        let mut k = *i;
        let end = loop {
            if k >= piece.len() {
                break None;
            }
            if in_string {
                if escaped {
                    escaped = false;
                    k += 1;
                    continue;
                }
                // Most of an app's bytes are in strings: jump to the next
                // quote or backslash (word at a time) instead of byte by byte.
                let Some(n) = memchr::memchr2(b'"', b'\\', &piece[k..]) else {
                    break None;
                };
                k += n + 1;
                if piece[k - 1] == b'\\' {
                    escaped = true;
                } else {
                    in_string = false;
                    if text {
                        break Some(k);
                    }
                }
                continue;
            }
            match piece[k] {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 2 {
                        break Some(k + 1);
                    }
                }
                _ => {}
            }
            k += 1;
        };
        (self.depth, self.in_string, self.escaped) = (depth, in_string, escaped);
        *i = end.unwrap_or(piece.len());
        end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The apps' texts and the skeleton, the body fed `step` bytes at a time.
    fn split(body: &[u8], step: usize) -> (Vec<String>, String) {
        let mut s = AppsSplitter::default();
        let mut apps = Vec::new();
        for piece in body.chunks(step) {
            s.feed(piece, |i, text| {
                assert_eq!(i, apps.len());
                apps.push(String::from_utf8(text.to_vec()).unwrap());
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        (apps, String::from_utf8(s.finish()).unwrap())
    }

    /// Reads each object app whole with serde_json when it can, as the
    /// Marathon decode does; records every app's text either way.
    struct Reading {
        apps: Vec<String>,
        whole: usize,
    }

    impl AppSink for Reading {
        type Error = ();
        fn whole(&mut self, index: usize, rest: &[u8]) -> Option<usize> {
            assert_eq!(index, self.apps.len());
            let mut values =
                serde_json::Deserializer::from_slice(rest).into_iter::<serde::de::IgnoredAny>();
            values.next()?.ok()?;
            let n = values.byte_offset();
            self.apps
                .push(String::from_utf8(rest[..n].to_vec()).unwrap());
            self.whole += 1;
            Some(n)
        }
        fn app(&mut self, index: usize, text: &[u8]) -> Result<(), ()> {
            assert_eq!(index, self.apps.len());
            self.apps.push(String::from_utf8(text.to_vec()).unwrap());
            Ok(())
        }
    }

    /// Apps read whole where they can be leave the same texts and skeleton
    /// as apps scanned, the body cut at every byte (an app cut by a piece's
    /// end, or not JSON, is scanned).
    #[test]
    fn apps_read_whole_split_as_scanned_ones() {
        let bodies: [&[u8]; 3] = [
            br#" {"v": {"apps": [9]}, "apps" : [ {"id": "/a]\"}", "t": [[1], {}]},
            "x\\", 12.5e3 ,null,[],{"n":{}} , {"id": "/b", "x": {"y": [1, "}"]}} ], "w": "apps"} "#,
            br#"{"apps": [{"a": "}]\\\"{[", "b": ["\\", "x\"]\\"]}, {"a": 1 2}, {} ]}"#,
            br#"{"apps": [{"a": {"b": [}}, {"c": 1}"#,
        ];
        let mut whole_reads = 0;
        for body in bodies {
            let (want, skeleton) = split(body, body.len());
            for step in 1..=body.len() {
                let mut s = AppsSplitter::default();
                let mut r = Reading {
                    apps: Vec::new(),
                    whole: 0,
                };
                for piece in body.chunks(step) {
                    s.feed_to(piece, &mut r).unwrap();
                }
                assert_eq!(r.apps, want, "step {step}");
                assert_eq!(
                    String::from_utf8(s.finish()).unwrap(),
                    skeleton,
                    "step {step}"
                );
                whole_reads += r.whole;
            }
        }
        assert!(whole_reads > 100, "only {whole_reads} apps read whole");
    }

    #[test]
    fn apps_come_out_whole_and_the_rest_is_the_skeleton() {
        let body = br#" {"v": {"apps": [9]}, "apps" : [ {"id": "/a]\"}", "t": [[1], {}]},
            "x\\", 12.5e3 ,null,[],{"n":{}} ], "w": "apps"} "#;
        let want = [
            r#"{"id": "/a]\"}", "t": [[1], {}]}"#,
            r#""x\\""#,
            "12.5e3",
            "null",
            "[]",
            r#"{"n":{}}"#,
        ];
        let skeleton = r#" {"v": {"apps": [9]}, "apps" : [ 0 ,
            0 , 0  ,0 ,0 ,0  ], "w": "apps"} "#;
        for step in 1..=body.len() {
            let (apps, skel) = split(body, step);
            assert_eq!(apps, want, "step {step}");
            assert_eq!(skel, skeleton, "step {step}");
        }
    }

    #[test]
    fn brackets_and_quotes_inside_strings_do_not_end_an_app() {
        // Escaped quotes and backslashes in runs, brackets in strings, a
        // string app ending in an escaped backslash: cut at every byte.
        let body = br#"{"apps": [{"a": "}]\\\"{[", "b": ["\\", "x\"]\\"]}, "q\\\"]}\\", {}]}"#;
        let want = [
            r#"{"a": "}]\\\"{[", "b": ["\\", "x\"]\\"]}"#,
            r#""q\\\"]}\\""#,
            "{}",
        ];
        for step in 1..=body.len() {
            let (apps, skel) = split(body, step);
            assert_eq!(apps, want, "step {step}");
            assert_eq!(skel, r#"{"apps": [0 , 0 , 0 ]}"#, "step {step}");
            for app in &apps {
                serde_json::from_str::<serde_json::Value>(app).expect("each app is JSON");
            }
        }
    }

    #[test]
    fn only_the_first_apps_list_of_the_top_object_is_split() {
        let (apps, skel) = split(br#"{"apps": [1], "\u0061pps": [2]}"#, 64);
        assert_eq!(apps, ["1"]);
        assert_eq!(skel, r#"{"apps": [0 ], "\u0061pps": [2]}"#);
        let (apps, skel) = split(br#"{"apps": 1, "apps": [2]}"#, 64);
        assert_eq!(apps, ["2"], "the first list, whatever came before");
        assert_eq!(skel, r#"{"apps": 1, "apps": [0 ]}"#);
        for body in [
            &br#"[{"apps": [1]}]"#[..],
            br#""apps""#,
            br#"{"x": {"apps": [1]}}"#,
        ] {
            let (apps, skel) = split(body, 3);
            assert!(apps.is_empty(), "{apps:?}");
            assert_eq!(skel.as_bytes(), body);
        }
    }

    #[test]
    fn an_app_cut_short_is_not_handed_out() {
        let (apps, skel) = split(br#"{"apps": [{"id": "/a"}, {"id": "/b"#, 5);
        assert_eq!(apps, [r#"{"id": "/a"}"#]);
        assert_eq!(skel, r#"{"apps": [0 , 0 "#);
        let (apps, _) = split(br#"{"apps": [12"#, 5);
        assert!(apps.is_empty(), "a number may go on");
    }

    #[test]
    fn an_error_from_the_caller_stops_the_read() {
        let mut s = AppsSplitter::default();
        let mut seen = 0;
        let r = s.feed(br#"{"apps": [1, 2, 3]}"#, |i, _| {
            seen += 1;
            if i == 1 { Err(i) } else { Ok(()) }
        });
        assert_eq!(r, Err(1));
        assert_eq!(seen, 2);
    }
}
