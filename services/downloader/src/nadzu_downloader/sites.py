"""The sites the installed yt-dlp can download from."""

from __future__ import annotations

from functools import lru_cache

from nadzu_common.messages import SupportedSite, SupportedSitesReply


@lru_cache(maxsize=1)
def supported_sites() -> SupportedSitesReply:
    """List working extractors once per process (about 0.2 s); the list changes only with yt-dlp."""
    from yt_dlp.extractor import gen_extractor_classes
    from yt_dlp.version import __version__ as yt_dlp_version

    sites: dict[str, SupportedSite] = {}
    for extractor in gen_extractor_classes():
        if not extractor.working():
            continue
        name = str(extractor.IE_NAME)
        description = extractor.IE_DESC if isinstance(extractor.IE_DESC, str) else None
        # `generic` appears twice in yt-dlp's list; keep the first entry of every name.
        sites.setdefault(name, SupportedSite(name=name, description=description))
    items = sorted(sites.values(), key=lambda site: site.name.lower())
    return SupportedSitesReply(yt_dlp_version=yt_dlp_version, items=items)
