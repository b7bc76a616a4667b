// framecast H.264 tiers in the browser: WebCodecs VideoDecoder fed from the WebSocket frame messages.
//
// Load with <script src="video.js"></script> before viewer.js; it defines window.FramecastVideo:
//
//   const ok = await FramecastVideo.supported("avc1.42E01F");       // hello: codecs ["h264", "jpeg"] if ok
//   const pipe = new FramecastVideo.VideoPipe(canvas, {
//     onDrawn(frameId, captureUs) { ...ack... },                    // after the picture is on the canvas
//     onSkipped(frameId) { ...ack... },                             // a delta frame that cannot be decoded
//     onKeyframeNeeded(reason) { ws.send('{"type":"keyframe"}') },  // rate-limited here (1 per second)
//   });
//   pipe.configure(tierInfo);            // {codec: "avc1.42C01F", width, height} from the hello's tiers
//   pipe.push(header, payloadBytes);     // header: {frameId, captureUs, flags, width, height}
//
// The payload is an Annex B access unit; keyframes (header flag 0x01) carry SPS and PPS in band, so no
// `description` is passed to configure() and the decoder can start at any keyframe. Until a keyframe
// arrives (after configure, a tier switch or a decoder error) delta frames are skipped and acked at
// once, so the edge's in-flight window keeps moving; the edge itself never sends a delta frame whose
// reference it dropped. A decoder error closes the decoder: a new one is made, the pipe waits for a
// keyframe and asks for one — a frozen picture for a moment, never a dead one.
"use strict";

(() => {
  const FLAG_KEYFRAME = 0x01;
  const KEYFRAME_REQUEST_INTERVAL_MS = 1000;
  const MAX_DECODE_QUEUE = 8; // more chunks waiting than this: the decoder cannot keep up, resync

  async function supported(codec) {
    if (!("VideoDecoder" in window) || !("EncodedVideoChunk" in window)) return false;
    try {
      const res = await VideoDecoder.isConfigSupported({ codec, optimizeForLatency: true });
      return !!res.supported;
    } catch (_e) {
      return false;
    }
  }

  class VideoPipe {
    constructor(canvas, hooks = {}) {
      this.canvas = canvas;
      this.ctx = canvas.getContext("2d", { alpha: false });
      this.hooks = hooks;
      this.config = null; // {codec, codedWidth, codedHeight, optimizeForLatency}
      this.decoder = null;
      this.waitingKey = true;
      this.lastKeyRequest = -Infinity;
      this.captureOf = new Map(); // frame id -> capture µs of chunks inside the decoder
      this.stats = { decoded: 0, skipped: 0, errors: 0, keyframes: 0, keyRequests: 0, resets: 0 };
    }

    // A video tier from the server hello: {name, codec, width, height}. Call again on a tier switch.
    configure(tier) {
      const codec = tier.codec;
      const same = this.config && this.config.codec === codec && this.config.codedWidth === tier.width &&
        this.config.codedHeight === tier.height;
      if (same && this.decoder && this.decoder.state === "configured") return;
      this.config = { codec, codedWidth: tier.width, codedHeight: tier.height, optimizeForLatency: true };
      this._reset("configure", false);
    }

    // One frame message of a video tier. Returns "decoding", "skipped" or "error".
    push(header, data) {
      const isKey = (header.flags & FLAG_KEYFRAME) !== 0;
      if (!this.config) return this._skip(header, "not configured");
      if (this.waitingKey && !isKey) return this._skip(header, "waiting for keyframe");
      if (!this.decoder || this.decoder.state === "closed") this._newDecoder();
      if (this.decoder.decodeQueueSize > MAX_DECODE_QUEUE && !isKey) {
        this._reset("decoder behind", true);
        return this._skip(header, "decoder behind");
      }
      try {
        if (isKey) {
          this.waitingKey = false;
          this.stats.keyframes++;
        }
        this.captureOf.set(header.frameId, header.captureUs);
        // timestamp carries the frame id (exact up to 2^53) so the output frame can be acked
        this.decoder.decode(new EncodedVideoChunk({
          type: isKey ? "key" : "delta", timestamp: header.frameId, data,
        }));
        return "decoding";
      } catch (e) {
        this.captureOf.delete(header.frameId);
        this._fail(e);
        this._ackSkipped(header.frameId);
        return "error";
      }
    }

    close() {
      if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
      this.decoder = null;
      this.captureOf.clear();
    }

    // --- internals -------------------------------------------------------------------------------
    _newDecoder() {
      this.decoder = new VideoDecoder({
        output: (frame) => this._draw(frame),
        error: (e) => this._fail(e),
      });
      this.decoder.configure(this.config);
    }

    _draw(frame) {
      const frameId = frame.timestamp;
      const captureUs = this.captureOf.get(frameId);
      this.captureOf.delete(frameId);
      try {
        if (this.canvas.width !== frame.displayWidth || this.canvas.height !== frame.displayHeight) {
          this.canvas.width = frame.displayWidth;
          this.canvas.height = frame.displayHeight;
        }
        this.ctx.drawImage(frame, 0, 0);
      } finally {
        frame.close();
      }
      this.stats.decoded++;
      if (this.hooks.onDrawn) this.hooks.onDrawn(frameId, captureUs);
    }

    _skip(header, why) {
      this.stats.skipped++;
      if (this.waitingKey) this._askKeyframe(why);
      this._ackSkipped(header.frameId);
      return "skipped";
    }

    _ackSkipped(frameId) {
      if (this.hooks.onSkipped) this.hooks.onSkipped(frameId);
    }

    _fail(e) {
      this.stats.errors++;
      if (this.hooks.onError) this.hooks.onError(e);
      this._reset("decoder error", true);
    }

    _reset(reason, ask) {
      this.stats.resets++;
      this.close();
      this.waitingKey = true;
      if (ask) this._askKeyframe(reason);
    }

    _askKeyframe(reason) {
      const now = performance.now();
      if (now - this.lastKeyRequest < KEYFRAME_REQUEST_INTERVAL_MS) return;
      this.lastKeyRequest = now;
      this.stats.keyRequests++;
      if (this.hooks.onKeyframeNeeded) this.hooks.onKeyframeNeeded(reason);
    }
  }

  window.FramecastVideo = { FLAG_KEYFRAME, supported, VideoPipe };
})();
