"""Video tiers (H.264): tier specs, encoding, GOP-aware sending, decoding and keyframe requests.

`tiers` and `gop` are pure and light (the edge imports them without PyAV);
`encoder` and `decode` import PyAV, so import them only where video is encoded
or decoded. See INTEGRATION.md beside this file and docs/video.md.
"""
