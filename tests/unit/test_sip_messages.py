"""SIP messages and digest answers (worker/sip_messages.py): parsing what real stacks send
(compact forms, several Vias, folded lines, LF-only ends), writing what we send, and the
RFC 2617 / RFC 7616 digest examples."""

from __future__ import annotations

import hashlib

import pytest

from worker import sip_messages as sm

INVITE = (
    b"INVITE sip:+4930123@trunk.example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1,"
    b" SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKa\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\n"
    b'f: "Dial, Gate" <sip:dialgate@example.com>;tag=abc\r\n'
    b"t: <sip:+4930123@trunk.example.com>\r\n"
    b"i: call-1@10.0.0.1\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"m: <sip:dialgate@10.0.0.1:5070>\r\n"
    b"Subject: folded\r\n"
    b"  across lines\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"v=0\r\nextra bytes past Content-Length"
)


def test_a_request_with_compact_forms_and_several_vias_is_read() -> None:
    msg = sm.parse(INVITE)
    assert msg.is_request and (msg.method, msg.uri) == ("INVITE", "sip:+4930123@trunk.example.com")
    assert msg.get_all("via") == [
        "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1",
        "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKa",
        "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb",
    ]
    assert msg.get("From") == '"Dial, Gate" <sip:dialgate@example.com>;tag=abc'
    assert msg.call_id == "call-1@10.0.0.1" and msg.cseq == (7, "INVITE")
    assert msg.get("Contact") == "<sip:dialgate@10.0.0.1:5070>"
    assert msg.get("subject") == "folded across lines"
    assert msg.get("Content-Type") == "application/sdp"
    assert msg.body == b"v=0\r"


def test_a_response_with_lf_line_ends_and_no_length_is_read() -> None:
    data = (
        b"SIP/2.0 486 Busy Here\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\nCall-ID: c\nCSeq: 1 INVITE\n\n"
    )
    msg = sm.parse(b"\r\n" + data)  # a keep-alive CRLF before it
    assert not msg.is_request and (msg.code, msg.reason) == (486, "Busy Here")
    assert msg.body == b""


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"",
        b"SIP/2.0 200 OK\r\nVia: x\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 10\r\n\r\nshort",
        b"SIP/2.0 200 OK\r\nVia: x\r\nCSeq: 1 INVITE\r\n\r\n",  # no Call-ID
        b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n",
        b"SIP/2.0 200 OK\r\nCall-ID: \xff\r\n\r\n",
    ],
)
def test_what_is_not_a_sip_message_is_refused(data: bytes) -> None:
    with pytest.raises(sm.SipParseError):
        sm.parse(data)


def test_a_request_written_is_read_back_with_its_length() -> None:
    headers = [("Via", "SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK1"), ("Call-ID", "c1")]
    headers += [("CSeq", "1 INVITE"), ("Content-Length", "999")]  # recomputed
    data = sm.request("INVITE", "sip:+1@h", headers, b"body")
    assert data.count(b"Content-Length") == 1 and b"Content-Length: 4\r\n\r\nbody" in data
    assert sm.parse(data).body == b"body"


def test_a_response_copies_the_vias_and_tags_to_once() -> None:
    req = sm.parse(INVITE)
    msg = sm.parse(sm.response(req, 180, "Ringing", to_tag="far"))
    assert msg.get_all("Via") == req.get_all("Via") and msg.cseq == (7, "INVITE")
    assert sm.param(msg.get("To") or "", "tag") == "far"
    bye = sm.parse(INVITE.replace(b"t: <sip:+4930123@trunk.example.com>", b"t: <sip:a@h>;tag=t1"))
    again = sm.parse(sm.response(bye, 200, "OK", to_tag="other"))
    assert again.get("To") == "<sip:a@h>;tag=t1"


def test_addresses_and_parameters() -> None:
    assert sm.address("sip:+4930@trunk.example.com") == ("trunk.example.com", 5060)
    assert sm.address("sip:+4930@10.1.2.3:5080;transport=udp") == ("10.1.2.3", 5080)
    assert sm.address("sip:[2001:db8::1]:5070") == ("2001:db8::1", 5070)
    for bad in ("tel:+4930", "sip:@", "sip:h:99999"):
        with pytest.raises(ValueError):
            sm.address(bad)
    assert sm.uri_of('"A, B" <sip:a@h;lr>;tag=1') == "sip:a@h;lr"
    assert sm.uri_of("sip:a@h;tag=1") == "sip:a@h"
    assert sm.param('"x;tag=no" <sip:a@h;tag=no>;tag=yes', "tag") == "yes"
    assert sm.param("SIP/2.0/UDP h:5060;rport;branch=z9hG4bKq", "branch") == "z9hG4bKq"
    assert sm.split_list('"a, b" <sip:x,y@h>, <sip:z@h>') == ['"a, b" <sip:x,y@h>', "<sip:z@h>"]


def test_identifiers_are_fresh_and_branches_carry_the_cookie() -> None:
    branches = {sm.branch() for _ in range(100)}
    assert len(branches) == 100 and all(b.startswith("z9hG4bK") for b in branches)
    assert sm.tag() != sm.tag() and sm.call_id("1.2.3.4").endswith("@1.2.3.4")


def test_rfc_2617_digest_example_with_qop() -> None:
    params = sm.challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = sm.authorization(
        params, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b"
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert "qop=auth," in value and "nc=00000001" in value and 'cnonce="0a4f113b"' in value
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in value


def test_rfc_7616_examples_md5_and_sha256() -> None:
    challenge = (
        'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    expected = {
        "MD5": "8ca523f5e9506fed4657c9700eebdbec",
        "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    }
    for algorithm, response in expected.items():
        params = sm.challenge(challenge.format(algorithm))
        value = sm.authorization(
            params, "GET", "/dir/index.html", "Mufasa", "Circle of Life", cnonce=cnonce
        )
        assert f'response="{response}"' in value and f"algorithm={algorithm}" in value


def test_a_challenge_without_qop_is_answered_as_rfc_2069() -> None:
    params = sm.challenge('Digest realm="r", nonce="n\\"1"')  # an escaped quote
    assert params == {"realm": "r", "nonce": 'n"1'}
    value = sm.authorization(params, "INVITE", "sip:+1@h", "u", "p")

    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    want = md5(f'{md5("u:r:p")}:n"1:{md5("INVITE:sip:+1@h")}')
    assert f'response="{want}"' in value and "qop" not in value and "cnonce" not in value


def test_challenges_we_cannot_answer_are_refused() -> None:
    with pytest.raises(ValueError, match="scheme"):
        sm.challenge('Basic realm="r"')
    with pytest.raises(ValueError, match="nonce"):
        sm.challenge('Digest realm="r"')
    with pytest.raises(ValueError, match="qop"):
        sm.authorization(
            sm.challenge('Digest realm="r", nonce="n", qop="auth-int"'), "M", "u", "a", "b"
        )
    with pytest.raises(ValueError, match="algorithm"):
        sm.authorization(
            sm.challenge('Digest realm="r", nonce="n", algorithm=SHA-1'), "M", "u", "a", "b"
        )


def test_the_offer_is_a_minimal_audio_sdp() -> None:
    lines = sm.sdp_offer("10.0.0.1", 40000, 7).decode().splitlines()
    assert (
        lines[0] == "v=0" and "c=IN IP4 10.0.0.1" in lines and "m=audio 40000 RTP/AVP 0 8" in lines
    )
    assert "c=IN IP6 ::1" in sm.sdp_offer("::1", 40000, 7).decode()
