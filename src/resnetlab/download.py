"""Downloads: the one path by which resnetlab fetches files (weights, datasets) and checks them.

torch.hub's downloader writes to a temporary file and moves it into place only when complete
(and checks a SHA-256 prefix on the way); an MD5 is checked after. A file that fails its check
is deleted, so a bad download is never used or kept.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file, read in 1 MiB chunks."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def fetch(url: str, target: str | Path, *, sha256_prefix: str | None = None, md5: str | None = None,
             progress: bool = False) -> Path:
    """Fetch `url` into `target`, checked against `sha256_prefix` and/or `md5`.

    An unreachable server is an OSError naming the URL and the reason; a digest mismatch is
    torch.hub's RuntimeError (SHA-256) or a ValueError (MD5), and nothing is left at `target`.
    """
    from urllib.error import URLError

    from torch.hub import download_url_to_file

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_url_to_file(url, str(target), hash_prefix=sha256_prefix, progress=progress)
    except URLError as error:
        raise OSError(f"could not download {url}: {error.reason}") from None
    except OSError as error:
        raise OSError(f"could not download {url}: {error.strerror or error}") from None
    if md5 is not None and digest(target, "md5") != md5:
        target.unlink()
        raise ValueError(f"{url}: the downloaded file does not match its published MD5 {md5}")
    return target
