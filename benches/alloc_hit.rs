//! Allocations per L1 hit, end to end: gatehouse (memory store) started in this process
//! on real listeners in front of the demo origin, one URL filled, then hits sent over
//! one keep-alive HTTP/1.1 connection by a client that allocates nothing (a request
//! written from a static buffer, the answer read into a fixed one). A counting global
//! allocator reports what the hits cost: every allocation counted is gatehouse's
//! (hyper, the router, the cache lookup, the answer) or tokio's.
//!
//! `cargo bench --bench alloc_hit` prints the figures recorded in `benches/README.md`;
//! in test mode (`cargo test --benches`, as `scripts/test.sh` runs it) it makes a
//! short run and checks that every answer was a hit.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use gatehouse::config::Config;
use gatehouse::demo::DemoOrigin;
use gatehouse::App;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters
// are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const REQUEST: &[u8] = b"GET /bench/bytes/1024/hot HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: alloc-hit\r\nAccept: */*\r\n\r\n";

/// Reads one response (head, then `Content-Length` bytes) into `buf`; answers whether
/// it was an L1 hit. Allocates nothing.
async fn one(stream: &mut TcpStream, buf: &mut [u8]) -> bool {
    stream.write_all(REQUEST).await.expect("write");
    let mut have = 0;
    loop {
        let n = stream.read(&mut buf[have..]).await.expect("read");
        assert!(n > 0, "gatehouse closed the connection");
        have += n;
        let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = &buf[..end];
        let length = head
            .split(|&b| b == b'\n')
            .find_map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let (name, value) = line.split_at(line.iter().position(|&b| b == b':')?);
                name.eq_ignore_ascii_case(b"content-length").then(|| {
                    std::str::from_utf8(&value[1..])
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })?
            })
            .expect("a Content-Length");
        let hit = head
            .windows(b"gatehouse; hit".len())
            .any(|w| w == b"gatehouse; hit");
        let total = end + 4 + length;
        while have < total {
            let n = stream.read(&mut buf[have..]).await.expect("read body");
            assert!(n > 0, "gatehouse closed the connection mid-body");
            have += n;
        }
        assert_eq!(have, total, "one request in flight, one answer back");
        return hit;
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let hits: u64 = if bench { 100_000 } else { 200 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let origin_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = DemoOrigin::start(origin_listener).expect("demo origin");
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
api_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
hosts = ["bench.example"]

[origin]
url = "http://{}"

[store]
backend = "memory"

[log]
level = "error"
access = false

[[routes]]
path = "/bench/bytes/{{size}}/{{key}}"
ttl = "1h"
"#,
            origin.addr()
        );
        let config = Config::from_toml_str(&text, &HashMap::new()).expect("bench config");
        let app = App::start(config, None).await.expect("gatehouse");
        let mut stream = TcpStream::connect(app.proxy_addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut buf = vec![0u8; 64 << 10];
        // The first request fills L1; the warm-up settles pools and lazy statics.
        one(&mut stream, &mut buf).await;
        for _ in 0..1000 {
            assert!(
                one(&mut stream, &mut buf).await,
                "the warm-up answers are hits"
            );
        }
        let (a0, b0) = (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed));
        let mut all_hits = true;
        for _ in 0..hits {
            all_hits &= one(&mut stream, &mut buf).await;
        }
        let (a1, b1) = (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed));
        assert!(all_hits, "every measured answer is an L1 hit");
        println!(
            "alloc_hit: {hits} L1 hits of a 1 KiB body over one HTTP/1.1 connection: \
             {:.2} allocations and {:.0} bytes allocated per hit",
            (a1 - a0) as f64 / hits as f64,
            (b1 - b0) as f64 / hits as f64
        );
        drop(stream);
        app.shutdown().await;
        origin.shutdown().await;
    });
}
