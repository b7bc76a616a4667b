"""Codecs: JPEG encoding, H.264 encoding and decoding, H.264 bitstream helpers.

The only place PyAV (`av`) is imported: `h264_encoder` (the inference service)
and `h264_decoder` (the Python client, optional). `jpeg` and `h264` are light;
import the PyAV modules only where video is encoded or decoded (the edge never does).
"""
