//! `prewarm pull --compress`: when to ask for zstd-compressed blocks and manifests.

/// Whether blocks and manifests are asked for zstd-compressed (`prewarm pull --compress`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compress {
    /// zstd, unless the URL's host is loopback (`localhost`, `127.0.0.0/8`, `::1`), where
    /// the network is faster than compressing and decompressing.
    #[default]
    Auto,
    /// Always ask for zstd (the server still sends small or incompressible objects as they are).
    Zstd,
    /// Never ask: every body travels as it is.
    Never,
}

impl Compress {
    /// Whether to send `Accept-Encoding: zstd` to `url`.
    pub(super) fn asks_zstd(self, url: &reqwest::Url) -> bool {
        match self {
            Compress::Zstd => true,
            Compress::Never => false,
            Compress::Auto => !is_loopback(url),
        }
    }
}

/// `localhost` (and `*.localhost`, RFC 6761), or a loopback IPv4/IPv6 address.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_asks_for_zstd_except_on_loopback() {
        let asks = |c: Compress, url: &str| c.asks_zstd(&reqwest::Url::parse(url).unwrap());
        for url in [
            "http://localhost:7070",
            "http://LOCALHOST.:7070",
            "http://api.localhost",
            "http://127.0.0.1:7070",
            "http://127.8.9.10",
            "http://[::1]:7070/prefix",
        ] {
            assert!(!asks(Compress::Auto, url), "{url}");
            assert!(asks(Compress::Zstd, url), "{url}");
        }
        for url in [
            "https://origin.example.com",
            "http://10.0.0.5:7070",
            "http://[2001:db8::1]",
            "http://localhost.example.com",
        ] {
            assert!(asks(Compress::Auto, url), "{url}");
            assert!(!asks(Compress::Never, url), "{url}");
        }
    }
}
