// framecast browser viewer: one WebSocket per stream, newest frame wins, ack after draw.
//
// Wire format (docs/protocol.md): each binary message is a 40-byte little-endian header
// (magic "FC", version, header_len, codec, tier, flags, quality, width u16, height u16,
// payload_len u32, frame_id u64, capture_us u64, publish_us u64) followed by the picture.
// Control messages are JSON text. JPEGs are decoded with createImageBitmap (off the main
// thread in Chromium); only the newest decoded frame is drawn, and it is acknowledged once
// drawn, so the edge's glass-to-glass latency and its in-flight window follow this screen.
// H.264 tiers go, in order, through WebCodecs (static/video.js), acked as they are drawn.
//
// Latency shown here = Date.now() at draw - capture_us: it assumes this computer's clock
// agrees with the inference host's (true on one host; otherwise off by the clock offset).
"use strict";

(() => {
  const HEADER_SIZE = 40;
  const PROTOCOL_VERSION = 1;
  const CODEC_JPEG = 1;
  const CODEC_H264 = 2;
  const BAD_MESSAGE = 4400;
  const WINDOW_MS = 5000; // stats window for fps, latency percentiles and kbit/s
  const STALL_MS = 3000; // no frame for this long while "live" shows "stalled"
  const RESYNC_GAP_US = 2000000; // id gaps across more capture time are not drops (old first frame, stall)
  const CLOSE = { NORMAL: 1000, PROTOCOL: 1002, RESTART: 1012, TRY_LATER: 1013, AUTH: 4001, UNKNOWN_STREAM: 4004 };
  // retrying cannot fix these: a bug or a refusal; a person must act
  const FATAL = new Set([1002, 1003, 1008, 1009, 4001, 4400]);

  const $ = (id) => document.getElementById(id);
  const canvas = $("view");
  const ctx = canvas.getContext("2d", { alpha: false });
  const ui = {
    stream: $("stream"), tier: $("tier"), fullscreen: $("fullscreen"), statsToggle: $("stats"), state: $("state"),
    stage: $("stage"), overlay: $("overlay"), banner: $("banner"), fps: $("o-fps"), lat: $("o-lat"), kbps: $("o-kbps"),
    codecOut: $("o-codec"), tierOut: $("o-tier"), drop: $("o-drop"), conn: $("o-conn"),
    bannerText: $("banner-text"), reload: $("reload"), tokenForm: $("token-form"), token: $("token"),
  };
  const TOKEN_KEY = "framecast.token"; // sessionStorage: this tab only, gone when it closes

  const params = new URLSearchParams(location.search);
  const session = {
    stream: params.get("stream") || "demo",
    tierChoice: params.get("tier") || "auto",
    clientId: loadClientId(),
    ws: null,
    hello: null,
    tiers: [],
    tier: null,
    state: "connecting",
    serverState: null, // last status message: live | stalled | draining
    attempt: 0,
    reconnectTimer: null,
    closeCode: null,
    closeReason: "",
    reconnects: 0,
    everOpened: false,
    connectedAt: 0,
    statsSince: performance.now(), // start of the current stream's stats (not reset by reconnects)
    // H.264 tiers (WebCodecs, static/video.js): offered in the hello when this browser decodes them
    videoSupported: false,
    codec: null, // codec of the last frame drawn: "jpeg" or "h264"
    connFrames: 0, // frames received on the current connection
    keyframeMessages: true, // false once an edge refused {"type":"keyframe"} (it then relies on its own IDRs)
    lastKeyframeMsgAt: -Infinity,
    token: "", // the token typed in the form (sessionStorage keeps it across reloads of this tab)
  };
  let videoPipe = null; // FramecastVideo.VideoPipe, made at the first H.264 frame of a connection
  const counters = newCounters();
  let received = []; // {t, bytes} per received frame (window)
  let drawn = []; // {t, latencyMs} per drawn frame (window)
  let pending = null; // newest received, not yet decoded: {header, blob}
  let decoding = false;

  function newCounters() {
    return {
      framesReceived: 0, framesDrawn: 0, bytes: 0, dropped: 0, skipped: 0, acksSent: 0, decodeErrors: 0,
      lastId: null, lastTier: null, lastCaptureUs: 0, lastFrameAt: 0, firstFrameMs: null, width: 0, height: 0,
    };
  }

  function loadClientId() {
    try {
      let id = sessionStorage.getItem("framecast.clientId");
      if (!id) {
        id = "web-" + Math.random().toString(36).slice(2, 10);
        sessionStorage.setItem("framecast.clientId", id);
      }
      return id;
    } catch (e) {
      return "web-" + Math.random().toString(36).slice(2, 10);
    }
  }

  // --- wire format -----------------------------------------------------------------------
  function parseHeader(buf) {
    if (buf.byteLength < HEADER_SIZE) throw new Error(`frame too short: ${buf.byteLength} bytes`);
    const v = new DataView(buf);
    if (v.getUint8(0) !== 0x46 || v.getUint8(1) !== 0x43) throw new Error("bad magic");
    const version = v.getUint8(2);
    if (version !== PROTOCOL_VERSION) throw new Error(`unsupported protocol version ${version}`);
    const headerLen = v.getUint8(3);
    const payloadLen = v.getUint32(12, true);
    if (headerLen < HEADER_SIZE || headerLen + payloadLen !== buf.byteLength) throw new Error("length mismatch");
    return {
      codec: v.getUint8(4), tier: v.getUint8(5), flags: v.getUint8(6), quality: v.getUint8(7),
      width: v.getUint16(8, true), height: v.getUint16(10, true), headerLen, payloadLen,
      id: Number(v.getBigUint64(16, true)), captureUs: Number(v.getBigUint64(24, true)),
      publishUs: Number(v.getBigUint64(32, true)),
    };
  }

  function send(obj) {
    const ws = session.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  // --- connection --------------------------------------------------------------------------
  function wsUrl(stream) {
    const url = new URL("ws/" + encodeURIComponent(stream), location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    url.hash = "";
    return url.toString();
  }

  function connect() {
    clearTimeout(session.reconnectTimer);
    session.reconnectTimer = null;
    setState(session.everOpened ? "reconnecting" : "connecting");
    const ws = new WebSocket(wsUrl(session.stream));
    ws.binaryType = "arraybuffer";
    session.ws = ws;
    session.connectedAt = performance.now();
    ws.onopen = () => {
      if (ws !== session.ws) return;
      const hello = { type: "hello", client_id: session.clientId, tier: session.tierChoice, max_fps: 0,
                      codecs: session.videoSupported ? ["h264", "jpeg"] : ["jpeg"] };
      const token = loadToken(); // never in the URL: URLs end up in logs
      if (token) hello.token = token;
      ws.send(JSON.stringify(hello));
      counters.lastId = null; // ids missed while away are not drops
      session.connFrames = 0;
    };
    ws.onmessage = (ev) => {
      if (ws !== session.ws) return;
      if (typeof ev.data === "string") onControl(ev.data);
      else onFrame(ev.data);
    };
    ws.onclose = (ev) => {
      if (ws !== session.ws) return;
      session.ws = null;
      session.closeCode = ev.code;
      session.closeReason = ev.reason || "";
      scheduleReconnect(ev.code, ev.reason);
    };
    ws.onerror = () => { /* onclose follows with the code */ };
  }

  function reconnectDelay(code, attempt) {
    // jittered exponential back-off; 1012 = restarting (come back soon), 1013 = full (wait longer)
    let ceiling;
    if (code === CLOSE.RESTART && attempt === 0) return 100 + Math.random() * 900;
    if (code === CLOSE.TRY_LATER) ceiling = Math.min(30000, 2000 * 2 ** attempt);
    else if (code === CLOSE.UNKNOWN_STREAM) ceiling = Math.min(30000, 2000 * 2 ** attempt);
    else ceiling = Math.min(10000, 250 * 2 ** attempt);
    return ceiling / 2 + Math.random() * ceiling / 2;
  }

  function scheduleReconnect(code, reason) {
    if (code === BAD_MESSAGE && performance.now() - session.lastKeyframeMsgAt < 3000) {
      // this edge does not know keyframe requests: stop sending them (its periodic IDRs still recover)
      session.keyframeMessages = false;
      code = CLOSE.RESTART;
    }
    if (FATAL.has(code)) {
      setState("error");
      if (code === CLOSE.AUTH) {
        showBanner(`not allowed to watch '${session.stream}' (${code} ${reason}): enter a viewer token`, "", true);
        showTokenForm(true);
      } else {
        showBanner(`connection refused: ${code} ${reason || ""}`, "", true);
      }
      return;
    }
    const delay = reconnectDelay(code, session.attempt);
    session.attempt += 1;
    setState("reconnecting");
    if (code === CLOSE.UNKNOWN_STREAM) {
      showBanner(`unknown stream '${session.stream}' — retrying in ${(delay / 1000).toFixed(1)} s`, "info");
    } else if (code === CLOSE.TRY_LATER) {
      showBanner(`edge is full — retrying in ${(delay / 1000).toFixed(1)} s`, "info");
    } else if (code !== CLOSE.RESTART) {
      showBanner(`connection lost (${code}${reason ? " " + reason : ""}) — retrying in ${(delay / 1000).toFixed(1)} s`,
                 "info");
    }
    session.reconnectTimer = setTimeout(connect, delay);
  }

  function switchStream(name) {
    if (name === session.stream) return;
    session.stream = name;
    const url = new URL(location.href);
    url.searchParams.set("stream", name);
    history.replaceState(null, "", url);
    const ws = session.ws;
    session.ws = null;
    if (ws) ws.close(CLOSE.NORMAL, "switching stream");
    resetStats();
    session.hello = null;
    session.everOpened = false;
    session.attempt = 0;
    connect();
  }

  function resetStats() {
    session.statsSince = performance.now();
    Object.assign(counters, newCounters());
    received = [];
    drawn = [];
    pending = null;
  }

  // --- edge -> viewer ------------------------------------------------------------------------
  function onControl(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      protocolError("control message is not JSON");
      return;
    }
    switch (msg.type) {
      case "hello":
        if (msg.protocol !== PROTOCOL_VERSION) {
          protocolError(`edge speaks protocol ${msg.protocol}, this page ${PROTOCOL_VERSION}`);
          return;
        }
        session.hello = msg;
        session.tiers = Array.isArray(msg.tiers) ? msg.tiers : [];
        if (videoPipe) videoPipe.close();
        videoPipe = null; // a new connection starts its video tier at a keyframe
        session.tier = msg.tier;
        fillTierSelect();
        // the session is established (an unknown stream is accepted, then closed, without a hello)
        if (session.everOpened) session.reconnects += 1;
        session.everOpened = true;
        setState("live");
        hideBanner();
        break;
      case "status":
        session.serverState = msg.state;
        if (msg.state === "stalled") {
          setState("stalled");
          showBanner("stream stalled" + (msg.detail ? `: ${msg.detail}` : "") + " — the last frame stays on screen",
                     "info");
        } else if (msg.state === "draining") {
          setState("draining");
        } else {
          setState("live");
          hideBanner();
        }
        break;
      case "tier":
        session.tier = msg.tier;
        break;
      case "error":
        showBanner(`edge error ${msg.code}: ${msg.message}`);
        break;
      default:
        break; // newer message types are ignored (forward compatible)
    }
  }

  function protocolError(why) {
    console.error("framecast protocol error:", why);
    showBanner(`protocol error: ${why}`);
    const ws = session.ws;
    if (ws) ws.close(CLOSE.PROTOCOL, "protocol error");
  }

  function onFrame(buf) {
    let h;
    try {
      h = parseHeader(buf);
    } catch (e) {
      protocolError(e.message);
      return;
    }
    const now = performance.now();
    counters.framesReceived += 1;
    counters.bytes += buf.byteLength;
    received.push({ t: now, bytes: buf.byteLength });
    // an id gap is a drop only between frames captured close together (see RESYNC_GAP_US), of one tier, and
    // not right after a connection's first frame: that one may be a still (a cached keyframe, or the newest
    // frame of another tier) sent while the live stream starts
    session.connFrames += 1;
    if (counters.lastId !== null && h.id > counters.lastId + 1 && h.captureUs - counters.lastCaptureUs < RESYNC_GAP_US &&
        session.connFrames > 2 && h.tier === counters.lastTier) {
      counters.dropped += h.id - counters.lastId - 1;
    }
    counters.lastId = h.id;
    counters.lastTier = h.tier;
    counters.lastCaptureUs = h.captureUs;
    counters.lastFrameAt = now;
    if (counters.firstFrameMs === null) counters.firstFrameMs = Math.round(now - session.connectedAt);
    session.attempt = 0; // frames flow: the next failure starts the back-off afresh
    if (session.state === "stalled" || session.state === "reconnecting" || session.state === "connecting") {
      setState("live");
    }
    if (h.codec === CODEC_H264) {
      onVideoFrame(h, buf);
      return;
    }
    if (h.codec !== CODEC_JPEG) {
      send({ type: "ack", id: h.id }); // not drawable here; ack so the edge's window keeps moving
      return;
    }
    if (videoPipe) { // switched from a video tier to JPEG: no late video picture may overwrite JPEG ones
      videoPipe.close();
      videoPipe = null;
    }
    if (pending) counters.skipped += 1; // superseded before it was decoded: newest frame wins
    pending = { h, blob: new Blob([new Uint8Array(buf, h.headerLen, h.payloadLen)], { type: "image/jpeg" }) };
    if (!decoding) pump();
  }

  async function pump() {
    decoding = true;
    while (pending) {
      const { h, blob } = pending;
      pending = null;
      const ws = session.ws;
      let bitmap;
      const t0 = performance.now();
      try {
        bitmap = await createImageBitmap(blob); // decoded off the main thread
      } catch (e) {
        counters.decodeErrors += 1;
        if (ws === session.ws) send({ type: "ack", id: h.id });
        continue;
      }
      if (ws !== session.ws) { bitmap.close(); continue; } // a frame of a connection we left
      if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
        canvas.width = bitmap.width;
        canvas.height = bitmap.height;
      }
      ctx.drawImage(bitmap, 0, 0);
      bitmap.close();
      session.tier = session.tiers[h.tier] ? session.tiers[h.tier].name : session.tier;
      frameDrawn(h.id, h.captureUs, h.width, h.height, performance.now() - t0, "jpeg");
    }
    decoding = false;
  }

  // After a picture reaches the canvas: stats, then the ack (acks are cumulative on the edge,
  // so this one also releases frames skipped before it).
  function frameDrawn(id, captureUs, width, height, decodeMs, codec) {
    counters.framesDrawn += 1;
    counters.width = width;
    counters.height = height;
    session.codec = codec;
    drawn.push({ t: performance.now(), latencyMs: Date.now() - captureUs / 1000, decodeMs });
    send({ type: "ack", id });
    counters.acksSent += 1;
  }

  // H.264: every access unit goes to the decoder in order (never newest-wins: a delta frame needs the
  // one before it); the edge paces them with the same ack window. See static/video.js.
  function onVideoFrame(h, buf) {
    const tier = session.tiers[h.tier];
    if (!window.FramecastVideo || !tier || !String(tier.codec || "").startsWith("avc1")) {
      counters.decodeErrors += 1;
      send({ type: "ack", id: h.id });
      return;
    }
    if (!videoPipe) {
      const ws = session.ws;
      const pushedAt = new Map(); // frame id -> performance.now() at push, for the decode + draw time
      videoPipe = new window.FramecastVideo.VideoPipe(canvas, {
        onDrawn: (id, captureUs) => {
          if (ws !== session.ws) return;
          const t0 = pushedAt.get(id);
          pushedAt.delete(id);
          frameDrawn(id, captureUs, canvas.width, canvas.height, t0 === undefined ? 0 : performance.now() - t0, "h264");
        },
        onSkipped: (id) => {
          pushedAt.delete(id);
          counters.skipped += 1;
          if (ws === session.ws) send({ type: "ack", id });
        },
        onKeyframeNeeded: (reason) => {
          if (ws !== session.ws || !session.keyframeMessages) return;
          session.lastKeyframeMsgAt = performance.now();
          send({ type: "keyframe", reason: String(reason).slice(0, 64) });
        },
        onError: () => { counters.decodeErrors += 1; },
      });
      videoPipe.pushedAt = pushedAt;
    }
    session.tier = tier.name;
    videoPipe.configure(tier);
    videoPipe.pushedAt.set(h.id, performance.now());
    if (videoPipe.pushedAt.size > 256) videoPipe.pushedAt.clear(); // bounded whatever the decoder does
    videoPipe.push({ frameId: h.id, captureUs: h.captureUs, flags: h.flags, width: h.width, height: h.height },
                   new Uint8Array(buf, h.headerLen, h.payloadLen));
  }

  // --- stats and overlay -------------------------------------------------------------------
  function percentile(sorted, p) {
    if (!sorted.length) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
    return sorted[Math.min(rank, sorted.length) - 1];
  }

  function computeStats() {
    const now = performance.now();
    const horizon = now - WINDOW_MS;
    while (received.length && received[0].t <= horizon) received.shift();
    while (drawn.length && drawn[0].t <= horizon) drawn.shift();
    const span = Math.max(1, Math.min(WINDOW_MS, now - session.statsSince)) / 1000;
    const lat = drawn.map((d) => d.latencyMs).sort((a, b) => a - b);
    const dec = drawn.map((d) => d.decodeMs).sort((a, b) => a - b);
    const bytes = received.reduce((sum, r) => sum + r.bytes, 0);
    const live = session.ws !== null && session.ws.readyState === WebSocket.OPEN;
    const stalled = session.serverState === "stalled" ||
      (live && counters.framesReceived > 0 && now - counters.lastFrameAt > STALL_MS);
    return {
      stream: session.stream,
      state: session.state,
      connected: live,
      stalled,
      fps: round(drawn.length / span, 1),
      receivedFps: round(received.length / span, 1),
      latencyP50Ms: round(percentile(lat, 50), 1),
      latencyP95Ms: round(percentile(lat, 95), 1),
      decodeDrawP50Ms: round(percentile(dec, 50), 1), // receive-side cost: decode + draw
      kbps: round((bytes * 8) / 1000 / span, 0),
      tier: session.tier,
      codec: session.codec,
      videoSupported: session.videoSupported,
      video: videoPipe ? Object.assign({}, videoPipe.stats) : null,
      tierChoice: session.tierChoice,
      tiers: session.tiers.map((t) => t.name),
      dropped: counters.dropped,
      skipped: counters.skipped,
      framesReceived: counters.framesReceived,
      framesDrawn: counters.framesDrawn,
      acksSent: counters.acksSent,
      decodeErrors: counters.decodeErrors,
      lastFrameId: counters.lastId,
      width: counters.width,
      height: counters.height,
      firstFrameMs: counters.firstFrameMs,
      reconnects: session.reconnects,
      closeCode: session.closeCode,
      server: session.hello ? session.hello.server : null,
      windowMs: WINDOW_MS,
    };
  }

  function round(x, digits) {
    const f = 10 ** digits;
    return Math.round(x * f) / f;
  }

  let lastStatsSent = 0;

  function render() {
    const s = computeStats();
    window.framecastStats = s; // for tests and curious people
    const now = performance.now();
    if (s.connected && now - lastStatsSent >= 2000) {
      lastStatsSent = now; // what this viewer sees, for the edge's logs and policy
      send({ type: "stats", fps: s.fps, latency_ms: Math.max(0, s.latencyP50Ms), dropped: s.dropped });
    }
    ui.fps.textContent = s.fps.toFixed(1);
    ui.lat.textContent = s.fps > 0 || s.latencyP50Ms ? `${s.latencyP50Ms.toFixed(0)} / ${s.latencyP95Ms.toFixed(0)} ms`
                                                     : "-";
    ui.kbps.textContent = s.kbps.toLocaleString();
    ui.codecOut.textContent = codecLabel(s.codec, session.tiers.find((t) => t.name === s.tier));
    ui.tierOut.textContent = s.tier ? `${s.tier}${s.tierChoice === "auto" ? " (auto)" : ""}` +
                                      (s.width ? ` ${s.width}x${s.height}` : "") : "-";
    ui.drop.textContent = `${s.dropped}` + (s.skipped ? ` (+${s.skipped} not drawn)` : "");
    const shown = s.stalled && session.state === "live" ? "stalled" : session.state;
    ui.conn.textContent = shown + (s.reconnects ? ` · ${s.reconnects} reconnects` : "");
    if (ui.state.textContent !== shown) { // a live region: write only changes, so each is announced once
      ui.state.textContent = shown;
      ui.state.dataset.state = shown;
    }
    ui.overlay.classList.toggle("stalled", s.stalled);
  }

  // "H.264 avc1.42C01F" (WebCodecs codec string of the tier) or "JPEG q85"
  function codecLabel(codec, tier) {
    if (codec === "h264") return "H.264" + (tier && tier.codec ? ` ${tier.codec}` : "");
    if (codec === "jpeg") return "JPEG" + (tier && tier.quality ? ` q${tier.quality}` : "");
    return "-";
  }

  function tierLabel(t) {
    const codec = String(t.codec || "jpeg");
    return `${t.name} (${t.width}x${t.height} ${codec === "jpeg" ? "q" + t.quality : "H.264"})`;
  }

  function setState(state) {
    session.state = state;
  }

  // fatal: retrying cannot help (a refusal, a bug): announced at once, with a reload button
  function showBanner(text, kind, fatal) {
    ui.banner.className = "banner" + (kind ? " " + kind : "");
    ui.banner.setAttribute("role", fatal ? "alert" : "status");
    ui.banner.setAttribute("aria-live", fatal ? "assertive" : "polite");
    ui.reload.hidden = !fatal;
    ui.banner.hidden = false;
    ui.bannerText.textContent = text;
  }

  function hideBanner() {
    ui.banner.hidden = true;
    ui.bannerText.textContent = "";
    ui.reload.hidden = true;
  }

  ui.reload.addEventListener("click", () => location.reload());

  // --- viewer token (edges with auth on) -----------------------------------------------------------
  function loadToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || session.token || "";
    } catch (e) {
      return session.token || ""; // storage disabled: the token typed in this page's life
    }
  }

  function showTokenForm(focus) {
    ui.tokenForm.hidden = false;
    if (focus) ui.token.focus();
  }

  ui.tokenForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = ui.token.value.trim();
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the token still serves this connection */ }
    session.token = token;
    hideBanner();
    const ws = session.ws;
    session.ws = null;
    if (ws) ws.close(CLOSE.NORMAL, "new token");
    session.everOpened = false;
    session.attempt = 0;
    connect();
    refreshStreams();
  });

  // --- controls ------------------------------------------------------------------------------
  function decodable(tier) {
    const codec = String(tier.codec || "jpeg");
    return codec === "jpeg" || (session.videoSupported && codec.startsWith("avc1"));
  }

  function fillTierSelect() {
    const names = session.tiers.filter(decodable).map((t) => t.name); // the edge feeds only these
    const options = ["auto", ...names];
    const current = Array.from(ui.tier.options).map((o) => o.value);
    if (current.join() !== options.join()) {
      ui.tier.replaceChildren(...options.map((name) => {
        const opt = document.createElement("option");
        opt.value = name;
        const t = session.tiers.find((x) => x.name === name);
        opt.textContent = t ? tierLabel(t) : name;
        return opt;
      }));
    }
    ui.tier.value = options.includes(session.tierChoice) ? session.tierChoice : "auto";
  }

  ui.tier.addEventListener("change", () => {
    session.tierChoice = ui.tier.value;
    send({ type: "set", tier: session.tierChoice });
    const url = new URL(location.href);
    if (session.tierChoice === "auto") url.searchParams.delete("tier");
    else url.searchParams.set("tier", session.tierChoice);
    history.replaceState(null, "", url);
  });

  ui.stream.addEventListener("change", () => switchStream(ui.stream.value));

  function toggleFullscreen() {
    if (document.fullscreenElement) document.exitFullscreen();
    else if (ui.stage.requestFullscreen) ui.stage.requestFullscreen().catch(() => {});
  }
  ui.fullscreen.addEventListener("click", toggleFullscreen);
  canvas.addEventListener("dblclick", toggleFullscreen);
  const toggleStats = () => { ui.overlay.hidden = !ui.overlay.hidden; };
  ui.statsToggle.addEventListener("click", toggleStats);
  document.addEventListener("keydown", (ev) => {
    if (ev.target instanceof HTMLSelectElement || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "f") toggleFullscreen();
    else if (ev.key === "s") toggleStats();
  });

  function streamNames(body) {
    // GET /streams answers {"streams": [{"stream": name, ...}]}; accept plain lists of names too
    const list = Array.isArray(body) ? body : (body && Array.isArray(body.streams) ? body.streams : []);
    return list.map((s) => (typeof s === "string" ? { name: s } : { name: s.stream || s.name, live: s.live }))
      .filter((s) => typeof s.name === "string" && s.name);
  }

  async function refreshStreams() {
    let entries = [];
    try {
      const token = loadToken();
      const resp = await fetch("streams", { cache: "no-store",
                                            headers: token ? { Authorization: `Bearer ${token}` } : {} });
      if (resp.ok) entries = streamNames(await resp.json());
      else if (resp.status === 401) showTokenForm(false); // auth is on: say where the token goes
    } catch (e) { /* the edge may be restarting; keep the current list */ }
    if (!entries.some((s) => s.name === session.stream)) entries.unshift({ name: session.stream });
    const labels = entries.map((s) => s.name + (s.live === false ? " (stalled)" : ""));
    const current = Array.from(ui.stream.options).map((o) => o.textContent);
    if (current.join() !== labels.join()) {
      ui.stream.replaceChildren(...entries.map((s, i) => {
        const opt = document.createElement("option");
        opt.value = s.name;
        opt.textContent = labels[i];
        return opt;
      }));
    }
    ui.stream.value = session.stream;
  }

  window.framecastViewer = { session, switchStream, computeStats, parseHeader }; // for tests and debugging
  async function start() {
    if (loadToken()) {
      ui.token.value = loadToken();
      showTokenForm(false);
    }
    fillTierSelect();
    refreshStreams();
    setInterval(refreshStreams, 10000);
    setInterval(render, 250);
    render();
    // H.264 tiers need WebCodecs; ?codecs=jpeg keeps this page on JPEG tiers
    if (window.FramecastVideo && params.get("codecs") !== "jpeg") {
      session.videoSupported = await window.FramecastVideo.supported("avc1.42E01F");
    }
    connect();
  }

  start();
})();
