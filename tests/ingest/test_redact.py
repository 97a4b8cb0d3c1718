import pytest

from crowdwatch.core.redact import redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://user:pass@host:554/x", "rtsp://***:***@host:554/x"),
        ("rtsp://admin@10.0.0.5/stream1", "rtsp://***@10.0.0.5/stream1"),
        ("RTSPS://Admin:S3cret@cam.local/live", "RTSPS://***:***@cam.local/live"),
        ("rtsp://user:p@ss@host/x", "rtsp://***:***@host/x"),  # unescaped '@' in the password
        ("rtsp://user:@host/x", "rtsp://***:***@host/x"),
        ("http://u:p@host:8080", "http://***:***@host:8080"),
        ("rtsp://@host/x", "rtsp://@host/x"),
        ("http://host/snap.jpg?user=bob&password=hunter2", "http://host/snap.jpg?user=bob&password=***"),
        ("http://host/x?pass=a&pwd=b&token=c", "http://host/x?pass=***&pwd=***&token=***"),
        ("http://host/x?key=a;auth=b;secret=c", "http://host/x?key=***;auth=***;secret=***"),
        ("http://host/x?PassWord=a&channel=1", "http://host/x?PassWord=***&channel=1"),
        ("http://host/x?token=abc#frag", "http://host/x?token=***#frag"),
        ("http://host/x?token=", "http://host/x?token=***"),
        ("http://host/x?monkey=1&keyframe=2", "http://host/x?monkey=1&keyframe=2"),
        (
            "https://b.s3.amazonaws.com/cam.jpg?X-Amz-Credential=AKIA%2F&X-Amz-Signature=ab12&X-Amz-Expires=60",
            "https://b.s3.amazonaws.com/cam.jpg?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60",
        ),
        ("http://host/x?client_secret=s&access_key=k", "http://host/x?client_secret=***&access_key=***"),
        ("rtsp://u:p@host/x?subtype=0&pwd=z", "rtsp://***:***@host/x?subtype=0&pwd=***"),
        ("rtsp://host:554/Streaming/Channels/101", "rtsp://host:554/Streaming/Channels/101"),
        ("http://host/path@with-at/x", "http://host/path@with-at/x"),
        # Unescaped '#', '?' or '/' in a password: everything up to the last '@' is hidden...
        ("rtsp://admin:p#ss123@cam.local/stream", "rtsp://***:***@cam.local/stream"),
        ("rtsp://admin:pa?ss123@cam.local/stream", "rtsp://***:***@cam.local/stream"),
        ("rtsp://admin:pa/ss@123@cam.local:554/s?x=1", "rtsp://***:***@cam.local:554/s?x=1"),
        ("rtsp://admin:12345#x@cam.local/stream", "rtsp://***:***@cam.local/stream"),
        # ...which hides a host:port too where an '@' sits in the path (ambiguous: safe side).
        ("http://host:8080/path@with-at/x", "http://***:***@with-at/x"),
        ("file:///videos/plaza.mp4", "file:///videos/plaza.mp4"),
        ("/videos/plaza.mp4", "/videos/plaza.mp4"),
        ("videos/user:pass@x.mp4", "videos/user:pass@x.mp4"),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url", ["rtsp://me:topsecret@h/x", "http://h/x?token=topsecret", "rtsp://topsecret@h"]
)
def test_secret_never_survives(url: str) -> None:
    assert "topsecret" not in redact_url(url)
