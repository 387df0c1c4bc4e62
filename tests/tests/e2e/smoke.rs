//! The basics through the `redis` crate in both protocol versions.

use redis::Commands;
use sessiond_tests::TestServer;

#[test]
fn set_get_in_resp2_and_resp3() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let _: () = con.set("greeting", "hello").unwrap();
        let value: String = con.get("greeting").unwrap();
        assert_eq!(value, "hello");
        let missing: Option<String> = con.get("missing").unwrap();
        assert_eq!(missing, None);
    }
}
