//! Several origins: the preferred one first, the next on a failure, and a short memory of
//! origins that failed.

use prewarm_shared::Digest;

use super::{bytes, error_code, origins, send_with, Fake, Origin};
use crate::flow::{handle, Incoming};
use crate::origins::Place;

const A: &str = "http://a.test";
const B: &str = "http://b.test";

fn serve(fake: &mut Fake, origin: &str, content: &[u8], how: Origin) -> String {
    let path = format!("/v1/blocks/{}", Digest::of(content));
    fake.origin.insert(format!("{origin}{path}"), how);
    path
}

fn hosts(fake: &Fake) -> Vec<String> {
    fake.origin_hits
        .borrow()
        .iter()
        .map(|u| u.split("/v1/").next().unwrap().to_string())
        .collect()
}

#[test]
fn a_dead_hung_or_failing_origin_fails_over_and_is_tried_last_for_a_while() {
    for (failure, code) in [
        (Origin::Unreachable, "origin_unreachable"),
        (Origin::Hang, "origin_timeout"),
        (Origin::Answer(503, Vec::new()), "upstream_error"),
    ] {
        let mut fake = Fake::default();
        let two = || origins(&[(A, None), (B, None)]);
        let one = b"first block".to_vec();
        let p1 = serve(&mut fake, A, &one, failure.clone());
        serve(&mut fake, B, &one, Origin::Answer(200, one.clone()));
        assert_eq!(bytes(send_with(&fake, two(), "GET", &p1, [None; 3])), one);
        assert_eq!(hosts(&fake), [A, B], "{code}");
        assert_eq!(fake.warnings.borrow().len(), 1);

        // A is remembered: the next object goes to B first, without paying A's failure again.
        let two_b = b"second block".to_vec();
        let p2 = serve(&mut fake, B, &two_b, Origin::Answer(200, two_b.clone()));
        serve(&mut fake, A, &two_b, failure.clone());
        assert_eq!(bytes(send_with(&fake, two(), "GET", &p2, [None; 3])), two_b);
        assert_eq!(hosts(&fake), [A, B, B], "{code}");

        // After the memory expires A is first again.
        fake.now.set(two().unwrap().origin_retry_after_ms + 1);
        let three = b"third block".to_vec();
        let p3 = serve(&mut fake, A, &three, Origin::Answer(200, three.clone()));
        assert_eq!(bytes(send_with(&fake, two(), "GET", &p3, [None; 3])), three);
        assert_eq!(hosts(&fake), [A, B, B, A], "{code}");

        // Every origin failing: the last failure is the answer.
        let four = b"fourth block".to_vec();
        let p4 = serve(&mut fake, A, &four, failure.clone());
        serve(&mut fake, B, &four, failure.clone());
        let reply = send_with(&fake, two(), "GET", &p4, [None; 3]);
        assert_eq!(error_code(reply), code);
        assert!(fake.cache.borrow().len() == 3);
    }
}

#[test]
fn a_404_or_wrong_bytes_are_answers_not_failures() {
    let mut fake = Fake::default();
    let two = || origins(&[(A, None), (B, None)]);
    let gone = serve(&mut fake, A, b"gone", Origin::Answer(404, Vec::new()));
    serve(&mut fake, B, b"gone", Origin::Answer(200, b"gone".to_vec()));
    let reply = send_with(&fake, two(), "GET", &gone, [None; 3]);
    assert_eq!(error_code(reply), "not_found");
    let good = b"good".to_vec();
    let bad = serve(&mut fake, A, &good, Origin::Answer(200, b"evil".to_vec()));
    serve(&mut fake, B, &good, Origin::Answer(200, good.clone()));
    let reply = send_with(&fake, two(), "GET", &bad, [None; 3]);
    assert_eq!(error_code(reply), "upstream_integrity");
    assert_eq!(hosts(&fake), [A, A], "A stays first: it is up");
}

#[test]
fn the_origin_in_the_requests_region_goes_first() {
    let mut fake = Fake::default();
    let content = b"regional".to_vec();
    let path = serve(&mut fake, A, &content, Origin::Answer(200, content.clone()));
    serve(&mut fake, B, &content, Origin::Answer(200, content.clone()));
    let config = origins(&[(A, Some("NA")), (B, Some("EU"))]);
    let req = Incoming {
        method: "GET",
        self_origin: super::EDGE,
        path: &path,
        range: None,
        if_none_match: None,
        accept_encoding: None,
        only_if_cached: false,
        place: Place {
            colo: Some("AMS"),
            continent: Some("EU"),
        },
    };
    let reply = super::run(handle(&fake, config, req)).unwrap();
    assert_eq!(bytes(reply), content);
    assert_eq!(hosts(&fake), [B]);
}
