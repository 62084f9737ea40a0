//! Benchmark (not a test): presigned `PutObject` URLs per second on one thread, with the
//! signed headers boto3's `generate_presigned_url('put_object', Params={Bucket, Key,
//! ContentType, ContentLength})` signs (`content-length`, `content-type`, `host`), and
//! with airlock's default create-only PUT (plus `if-none-match`).
//! Usage: `presign_bench [iterations, default 200000]`. The last line is
//! `presigns_per_sec=<n>` for the boto3-equivalent case, for scripts.

use std::hint::black_box;
use std::time::Instant;

use airlock_presign::{Addressing, Credentials, PresignConfig, Presigner, PutRequest};
use chrono::Utc;

fn run(signer: &Presigner, request: &PutRequest<'_>, iterations: u32) -> f64 {
    let start = Instant::now();
    let mut bytes = 0_usize;
    for _ in 0..iterations {
        // The clock is read per call, as boto3 does.
        let presigned = signer
            .presign_put(black_box(request), Utc::now())
            .expect("valid request");
        bytes += presigned.url.len();
    }
    let elapsed = start.elapsed().as_secs_f64();
    black_box(bytes);
    f64::from(iterations) / elapsed
}

fn main() {
    let iterations: u32 = std::env::args().nth(1).map_or(200_000, |n| {
        n.parse().expect("iterations: a positive integer")
    });
    let signer = Presigner::new(
        PresignConfig::new(
            "https://s3.amazonaws.com",
            "us-east-1",
            Addressing::VirtualHosted,
        ),
        Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
    )
    .expect("valid configuration");
    let key = "incoming/2026/05/09/0196b3f2-7c1e-7a3b-9f4e-2d8c5b1a0e77/photo.jpg";
    let boto3_like =
        PutRequest::new("airlock-uploads", key, "image/jpeg", 1_048_576).allow_overwrite();
    let create_only = PutRequest::new("airlock-uploads", key, "image/jpeg", 1_048_576);

    // Warm-up: first use derives the day's signing key and faults in the code.
    run(&signer, &boto3_like, iterations / 10 + 1);
    let create_only_rate = run(&signer, &create_only, iterations);
    let boto3_like_rate = run(&signer, &boto3_like, iterations);
    println!(
        "create-only PUT (content-length;content-type;host;if-none-match): {create_only_rate:.0} presigns/s"
    );
    println!("PUT (content-length;content-type;host): {boto3_like_rate:.0} presigns/s");
    println!("presigns_per_sec={boto3_like_rate:.0}");
}
