//! Tests of the tiered policy with in-memory tiers that can be broken, corrupted and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::TagStore;
use crate::{conformance, MemoryStore, Probe};
use prewarm_shared::{RuntimeName, Tag};

/// A tier double: stores whatever it is given (so tests can plant bad bytes), can be switched
/// off (→ Unavailable), counts its reads, and can be slowed down.
#[derive(Default)]
struct Raw {
    name: &'static str,
    objects: Mutex<HashMap<(Kind, Digest), Bytes>>,
    tags: MemoryStore,
    down: AtomicBool,
    gets: AtomicU64,
    delay_ms: AtomicU64,
}

impl Raw {
    fn new(name: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            ..Default::default()
        })
    }
    fn plant(&self, kind: Kind, d: Digest, b: &'static [u8]) {
        self.objects
            .lock()
            .unwrap()
            .insert((kind, d), Bytes::from_static(b));
    }
    fn has(&self, kind: Kind, d: &Digest) -> bool {
        self.objects.lock().unwrap().contains_key(&(kind, *d))
    }
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(self.name, "switched off"));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for Raw {
    fn name(&self) -> &str {
        self.name
    }
    async fn get(&self, kind: Kind, d: &Digest) -> Result<Option<Object>, StoreError> {
        self.check()?;
        self.gets.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(&(kind, *d))
            .cloned()
            .map(Object::from_bytes))
    }
    async fn get_range(
        &self,
        kind: Kind,
        d: &Digest,
        r: Range<u64>,
    ) -> Result<Option<Object>, StoreError> {
        let Some(o) = self.get(kind, d).await? else {
            return Ok(None);
        };
        Ok(Some(slice(o.into_bytes().await?, r)?))
    }
    async fn head(&self, kind: Kind, d: &Digest) -> Result<Option<u64>, StoreError> {
        self.check()?;
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(&(kind, *d))
            .map(|b| b.len() as u64))
    }
    async fn put(&self, kind: Kind, d: &Digest, body: ByteStream) -> Result<(), StoreError> {
        self.check()?;
        let b = Object { size: 0, body }.into_bytes().await?;
        let actual = Digest::of(&b);
        if actual != *d {
            return Err(StoreError::Integrity {
                kind: kind.as_str(),
                expected: *d,
                actual,
            });
        }
        self.objects.lock().unwrap().insert((kind, *d), b);
        Ok(())
    }
    async fn delete(&self, kind: Kind, d: &Digest) -> Result<(), StoreError> {
        self.check()?;
        self.objects.lock().unwrap().remove(&(kind, *d));
        Ok(())
    }
    async fn list(&self, kind: Kind) -> Result<Vec<crate::Listed>, StoreError> {
        self.check()?;
        let now = std::time::SystemTime::now();
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, d), b)| crate::Listed {
                digest: *d,
                size: b.len() as u64,
                written: now,
            })
            .collect())
    }
    async fn quarantine(&self, kind: Kind, d: &Digest) -> Result<(), StoreError> {
        self.delete(kind, d).await
    }
}

#[async_trait::async_trait]
impl TagStore for Raw {
    async fn get_tag(&self, n: &RuntimeName, t: &Tag) -> Result<Option<Digest>, StoreError> {
        self.check()?;
        self.tags.get_tag(n, t).await
    }
    async fn set_tag(&self, n: &RuntimeName, t: &Tag, d: &Digest) -> Result<(), StoreError> {
        self.check()?;
        self.tags.set_tag(n, t, d).await
    }
    async fn delete_tag(&self, n: &RuntimeName, t: &Tag) -> Result<(), StoreError> {
        self.check()?;
        self.tags.delete_tag(n, t).await
    }
    async fn list_tags(&self) -> Result<Vec<crate::TagEntry>, StoreError> {
        self.check()?;
        self.tags.list_tags().await
    }
}

#[async_trait::async_trait]
impl crate::Records for Raw {
    async fn get_record(&self, k: &crate::RecordKey) -> Result<Option<Bytes>, StoreError> {
        self.check()?;
        self.tags.get_record(k).await
    }
    async fn put_record(&self, k: &crate::RecordKey, doc: Bytes) -> Result<(), StoreError> {
        self.check()?;
        self.tags.put_record(k, doc).await
    }
    async fn delete_record(&self, k: &crate::RecordKey) -> Result<(), StoreError> {
        self.check()?;
        self.tags.delete_record(k).await
    }
    async fn list_records(
        &self,
        p: &crate::RecordKey,
    ) -> Result<Vec<crate::RecordKey>, StoreError> {
        self.check()?;
        self.tags.list_records(p).await
    }
}

#[async_trait::async_trait]
impl Probe for Raw {
    async fn probe(&self) -> Result<(), StoreError> {
        self.check()
    }
}

struct Stack {
    local: Arc<Raw>,
    hot: Arc<Raw>,
    remote: Arc<Raw>,
    tiered: Tiered,
}

fn stack() -> Stack {
    let (local, hot, remote) = (Raw::new("local"), Raw::new("hot"), Raw::new("remote"));
    let tiered = Tiered::new(
        Some(Tier::new(Role::Local, local.clone())),
        Some(Tier::new(Role::Hot, hot.clone()).with_limits(
            1 << 20,
            10 << 20,
            Duration::from_secs(3600),
        )),
        Some(Tier::new(Role::Remote, remote.clone())),
        None,
        64 << 20,
    )
    .unwrap();
    Stack {
        local,
        hot,
        remote,
        tiered,
    }
}

fn tier<'a>(m: &'a MetricsSnapshot, name: &str) -> &'a crate::TierMetrics {
    m.tiers.iter().find(|t| t.name == name).unwrap()
}

#[tokio::test]
async fn conformance_suite() {
    let s = stack();
    conformance::run_all(&s.tiered).await;
    conformance::tags(&s.tiered).await;
    conformance::records(&s.tiered).await;
    let only_disk = Tiered::new(
        Some(Tier::new(Role::Local, Arc::new(MemoryStore::new()))),
        None,
        None,
        None,
        1 << 20,
    )
    .unwrap();
    conformance::run_all(&only_disk).await;
    let with_ram = ram_stack(RamCache::new(1 << 20, 64 << 10));
    conformance::run_all(&with_ram.tiered).await;
    conformance::tags(&with_ram.tiered).await;
}

#[tokio::test]
async fn remote_hit_is_verified_served_and_backfilled_once() {
    let s = stack();
    let d = Digest::of(b"block");
    s.remote.plant(Kind::Block, d, b"block");
    assert_eq!(
        s.tiered.get_bytes(Kind::Block, &d).await.unwrap().unwrap(),
        &b"block"[..]
    );
    assert!(s.local.has(Kind::Block, &d) && s.hot.has(Kind::Block, &d));
    assert_eq!(
        s.tiered.get_bytes(Kind::Block, &d).await.unwrap().unwrap(),
        &b"block"[..]
    );
    assert_eq!(
        s.remote.gets.load(Ordering::SeqCst),
        1,
        "the slow tier is read once"
    );
    let m = s.tiered.metrics();
    assert_eq!(
        (
            tier(&m, "remote").hits,
            tier(&m, "local").hits,
            tier(&m, "hot").backfills
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn wrong_bytes_are_never_served_nor_backfilled() {
    let s = stack();
    let d = Digest::of(b"good bytes");
    s.hot.plant(Kind::Block, d, b"evil bytes");
    s.remote.plant(Kind::Block, d, b"good bytes");
    assert_eq!(s.tiered.head(Kind::Block, &d).await.unwrap(), Some(10));
    assert_eq!(
        s.tiered.get_bytes(Kind::Block, &d).await.unwrap().unwrap(),
        &b"good bytes"[..]
    );
    assert_eq!(
        s.hot
            .objects
            .lock()
            .unwrap()
            .get(&(Kind::Block, d))
            .unwrap(),
        &b"good bytes"[..],
        "corrupt copy replaced"
    );
    assert_eq!(tier(&s.tiered.metrics(), "hot").integrity_failures, 1);
    // A corrupt durable copy with nothing else: never the bytes. It is quarantined there and
    // reads as missing, so `missing-blocks` asks for it and the next push repairs it.
    let e = Digest::of(b"other");
    s.remote.plant(Kind::Block, e, b"OTHER");
    assert!(s.tiered.get(Kind::Block, &e).await.unwrap().is_none());
    assert!(!s.local.has(Kind::Block, &e) && !s.remote.has(Kind::Block, &e));
    assert_eq!(s.tiered.head_durable(Kind::Block, &e).await.unwrap(), None);
    assert_eq!(tier(&s.tiered.metrics(), "remote").integrity_failures, 1);
    s.tiered
        .put_bytes(Kind::Block, &e, Bytes::from_static(b"other"))
        .await
        .unwrap();
    assert_eq!(
        s.tiered.get_bytes(Kind::Block, &e).await.unwrap().unwrap(),
        &b"other"[..]
    );
}

#[tokio::test]
async fn hot_tier_down_fails_open_and_recovers() {
    let s = stack();
    let d = Digest::of(b"x");
    s.remote.plant(Kind::Block, d, b"x");
    s.hot.down.store(true, Ordering::SeqCst);
    assert_eq!(
        s.tiered.get_bytes(Kind::Block, &d).await.unwrap().unwrap(),
        &b"x"[..]
    );
    s.tiered
        .put_bytes(Kind::Block, &Digest::of(b"y"), Bytes::from_static(b"y"))
        .await
        .unwrap();
    assert!(tier(&s.tiered.metrics(), "hot").errors >= 2);
    assert!(!s.tiered.health().await.ready || !s.hot.has(Kind::Block, &d));
    s.hot.down.store(false, Ordering::SeqCst);
    let z = Digest::of(b"z");
    s.tiered
        .put_bytes(Kind::Block, &z, Bytes::from_static(b"z"))
        .await
        .unwrap();
    assert!(s.hot.has(Kind::Block, &z), "back in use once it answers");
    assert!(s.tiered.health().await.ready);
}

#[tokio::test]
async fn durable_tier_down_refuses_writes_but_serves_cached_reads() {
    let s = stack();
    let d = Digest::of(b"cached");
    s.tiered
        .put_bytes(Kind::Block, &d, Bytes::from_static(b"cached"))
        .await
        .unwrap();
    let name: RuntimeName = "rt".parse().unwrap();
    let tag: Tag = "v1".parse().unwrap();
    s.tiered.set_tag(&name, &tag, &d).await.unwrap();
    s.remote.down.store(true, Ordering::SeqCst);
    let n = Digest::of(b"new");
    let e = s
        .tiered
        .put_bytes(Kind::Block, &n, Bytes::from_static(b"new"))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
    assert!(
        !s.local.has(Kind::Block, &n) && !s.hot.has(Kind::Block, &n),
        "nothing cached that is not durable"
    );
    assert!(s.tiered.set_tag(&name, &tag, &n).await.is_err());
    assert_eq!(
        s.tiered.get_bytes(Kind::Block, &d).await.unwrap().unwrap(),
        &b"cached"[..]
    );
    assert_eq!(
        s.tiered.get_tag(&name, &tag).await.unwrap(),
        Some(d),
        "tag from the hot tier"
    );
    assert!(
        s.tiered
            .head(Kind::Block, &Digest::of(b"unknown"))
            .await
            .is_err(),
        "no 'missing' without the durable tier"
    );
    let h = s.tiered.health().await;
    assert!(!h.ready);
}

#[tokio::test]
async fn concurrent_misses_fetch_once() {
    let s = stack();
    let d = Digest::of(b"popular");
    s.remote.plant(Kind::Block, d, b"popular");
    s.remote.delay_ms.store(50, Ordering::SeqCst);
    let reads = (0..16).map(|_| {
        let t = s.tiered.clone();
        async move { t.get_bytes(Kind::Block, &d).await }
    });
    for r in futures::future::join_all(reads).await {
        assert_eq!(r.unwrap().unwrap(), &b"popular"[..]);
    }
    assert_eq!(s.remote.gets.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn head_from_hot_tier_hands_its_bytes_to_the_get() {
    let hot = Raw::new("hot");
    let remote = Raw::new("remote");
    let t = Tiered::new(
        None,
        Some(Tier::new(Role::Hot, hot.clone())),
        Some(Tier::new(Role::Remote, remote.clone())),
        None,
        1 << 20,
    )
    .unwrap();
    let d = Digest::of(b"hot block");
    hot.plant(Kind::Block, d, b"hot block");
    assert_eq!(t.head(Kind::Block, &d).await.unwrap(), Some(9));
    assert_eq!(
        t.get_bytes(Kind::Block, &d).await.unwrap().unwrap(),
        &b"hot block"[..]
    );
    assert_eq!(hot.gets.load(Ordering::SeqCst), 1);
    assert_eq!(remote.gets.load(Ordering::SeqCst), 0);
}

/// A stateless stack (Redis-like hot tier + remote) with an in-process cache in front.
fn ram_stack(ram: RamCache) -> Stack {
    let (local, hot, remote) = (Raw::new("local"), Raw::new("hot"), Raw::new("remote"));
    let tiered = Tiered::new(
        None,
        Some(Tier::new(Role::Hot, hot.clone())),
        Some(Tier::new(Role::Remote, remote.clone())),
        Some(ram),
        1 << 20,
    )
    .unwrap();
    Stack {
        local,
        hot,
        remote,
        tiered,
    }
}

#[tokio::test]
async fn memory_serves_verified_repeats_without_the_hot_tier() {
    let s = ram_stack(RamCache::new(1 << 20, 64 << 10));
    let d = Digest::of(b"hot block");
    s.hot.plant(Kind::Block, d, b"hot block");
    for _ in 0..3 {
        assert_eq!(
            s.tiered.get_bytes(Kind::Block, &d).await.unwrap().unwrap(),
            &b"hot block"[..]
        );
    }
    let r = s
        .tiered
        .get_range(Kind::Block, &d, 4..9)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.into_bytes().await.unwrap(), &b"block"[..]);
    assert_eq!(s.tiered.head(Kind::Block, &d).await.unwrap(), Some(9));
    assert_eq!(
        s.hot.gets.load(Ordering::SeqCst),
        1,
        "one read of the hot tier"
    );
    let m = s.tiered.metrics().memory.unwrap();
    assert_eq!((m.inserts, m.hits), (1, 3));
    // A delete through the stack evicts it from memory too.
    s.tiered.delete(Kind::Block, &d).await.unwrap();
    assert_eq!(
        s.tiered.get(Kind::Block, &d).await.unwrap().map(|o| o.size),
        None
    );
    assert_eq!(s.local.gets.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn memory_never_keeps_bytes_with_the_wrong_hash() {
    let s = ram_stack(RamCache::new(1 << 20, 64 << 10));
    let d = Digest::of(b"real bytes");
    s.hot.plant(Kind::Block, d, b"evil bytes");
    s.remote.plant(Kind::Block, d, b"real bytes");
    assert_eq!(
        s.tiered.get_bytes(Kind::Block, &d).await.unwrap().unwrap(),
        &b"real bytes"[..]
    );
    let m = s.tiered.metrics();
    assert_eq!(tier(&m, "hot").integrity_failures, 1);
    assert_eq!(
        m.memory.as_ref().unwrap().inserts,
        1,
        "only the verified copy"
    );
    assert_eq!(
        s.tiered.get_bytes(Kind::Block, &d).await.unwrap().unwrap(),
        &b"real bytes"[..]
    );
    assert_eq!(
        s.remote.gets.load(Ordering::SeqCst),
        1,
        "second read from memory"
    );
}

#[tokio::test]
async fn memory_skips_objects_over_its_size_limit() {
    let s = ram_stack(RamCache::new(1 << 20, 4));
    let d = Digest::of(b"too big for memory");
    s.hot.plant(Kind::Block, d, b"too big for memory");
    for _ in 0..2 {
        s.tiered.get_bytes(Kind::Block, &d).await.unwrap().unwrap();
    }
    assert_eq!(s.hot.gets.load(Ordering::SeqCst), 2);
    assert_eq!(s.tiered.metrics().memory.unwrap().inserts, 0);
}

fn render(m: &crate::ReadMetrics) -> String {
    let mut r = prometheus_client::registry::Registry::with_prefix("prewarm");
    m.register(&mut r);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
    out
}

#[tokio::test]
async fn reads_are_timed_by_tier_and_result_and_bytes_counted_where_served() {
    let s = stack();
    let d = Digest::of(b"good bytes");
    s.hot.plant(Kind::Block, d, b"evil bytes");
    s.remote.plant(Kind::Block, d, b"good bytes");
    s.tiered.get_bytes(Kind::Block, &d).await.unwrap().unwrap();
    let text = render(s.tiered.read_metrics());
    for line in [
        r#"prewarm_tier_read_seconds_count{tier="local",result="miss"} 1"#,
        r#"prewarm_tier_read_seconds_count{tier="hot",result="error"} 1"#,
        r#"prewarm_tier_read_seconds_count{tier="remote",result="hit"} 1"#,
        r#"prewarm_tier_served_bytes_total{tier="remote"} 10"#,
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert!(
        !text.contains(r#"prewarm_tier_served_bytes_total{tier="hot"}"#),
        "{text}"
    );
    // Backfilled into the local tier: a Range read now comes from there, counting the range.
    let o = s
        .tiered
        .get_range(Kind::Block, &d, 2..6)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.size, 4);
    let text = render(s.tiered.read_metrics());
    assert!(
        text.contains(r#"prewarm_tier_served_bytes_total{tier="local"} 4"#),
        "{text}"
    );
}
