// Monitor page: plays the live channel with hls.js tuned for low latency, shows /status.
// Latency = wall clock - hls.playingDate (needs PROGRAM-DATE-TIME), sampled every 250 ms and
// exposed on window.__monitor for tests.
"use strict";
(function () {
  const SRC = "master.m3u8";
  const video = document.getElementById("video");
  const $ = (id) => document.getElementById(id);
  const mon = {
    latencies: [],        // [wall ms, latency ms]
    errors: [],           // hls.js errors {type, details, fatal}
    fatal: false,
    waiting: 0,           // 'waiting' events after the first 'playing' (stalls)
    waitingLog: [],       // {wall, currentTime, buffered} of each
    playingAt: null,      // wall ms of the first 'playing'
    ended: false,
    frames() {
      const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
      return { total: q ? q.totalVideoFrames : -1, dropped: q ? q.droppedVideoFrames : -1,
               currentTime: video.currentTime, wall: Date.now(),
               playingDate: hls && hls.playingDate ? hls.playingDate.getTime() : null };
    },
  };
  window.__monitor = mon;
  let hls = null;

  function start() {
    if (window.Hls && Hls.isSupported()) {
      hls = new Hls({
        // Our playlists have no LL-HLS parts and no CAN-BLOCK-RELOAD, so hls.js loads whole 1 s
        // segments either way; lowLatencyMode only enables its playback-rate catch-up
        // (hls.js 1.7 ignores maxLiveSyncPlaybackRate without it).
        lowLatencyMode: true,
        // 1.3 s behind the live edge (overrides the playlist's HOLD-BACK of 3 target durations):
        // the built-in server answers playlist reloads the moment a segment is published, so
        // this leaves about 0.3 s for fetching and appending it.
        liveSyncDuration: 1.3,
        maxLiveSyncPlaybackRate: 1.5,   // catch up by playing faster instead of seeking
        liveMaxLatencyDuration: 6,      // (hls.js refuses a mix of *Count and seconds settings)
        backBufferLength: 10,
        manifestLoadingMaxRetry: 10,
        levelLoadingMaxRetry: 10,
        fragLoadingMaxRetry: 10,
      });
      window.__hls = hls;
      hls.on(Hls.Events.ERROR, (ev, data) => {
        mon.errors.push({ type: data.type, details: data.details, fatal: !!data.fatal, at: Date.now() });
        if (data.fatal) {
          mon.fatal = true;
          if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
        }
      });
      hls.loadSource(SRC);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = SRC;  // Safari's native player (no latency figure)
    } else {
      $("player").textContent = "this browser cannot play HLS";
    }
    video.addEventListener("playing", () => { if (mon.playingAt === null) mon.playingAt = Date.now(); });
    video.addEventListener("waiting", () => {
      if (mon.playingAt === null) return;
      mon.waiting += 1;
      const b = video.buffered, ranges = [];
      for (let i = 0; i < b.length; i++) ranges.push([b.start(i), b.end(i)]);
      mon.waitingLog.push({ wall: Date.now(), currentTime: video.currentTime, buffered: ranges });
    });
    video.addEventListener("ended", () => { mon.ended = true; });
    video.play().catch(() => {});
  }

  function sample() {
    if (hls && hls.playingDate && !video.paused) {
      const lat = Date.now() - hls.playingDate.getTime();
      mon.latencies.push([Date.now(), lat, video.currentTime, video.playbackRate]);
      if (mon.latencies.length > 20000) mon.latencies.splice(0, 10000);
      $("latency").textContent = (lat / 1000).toFixed(2) + " s";
    }
    const f = mon.frames();
    $("player").textContent = `${video.paused ? "paused" : "playing"}, ${f.total} frames decoded, ` +
      `${f.dropped} dropped, rate ${video.playbackRate.toFixed(2)}, stalls ${mon.waiting}` +
      (mon.fatal ? ", FATAL error" : "");
  }

  async function status() {
    try {
      const r = await fetch("status", { cache: "no-store" });
      const s = await r.json();
      mon.status = s;
      const oa = s.on_air || {};
      $("onair").textContent = `${oa.key || "–"} since ${oa.since || "–"} (media segment ${oa.index})`;
      const n = s.next;
      $("next").textContent = n ? `${n.key} at ${n.due}: ${n.ready_s} s ready` +
        (n.complete ? " (complete)" : "") + (n.error ? ` REFUSED: ${n.error}` : "") : "–";
      $("ahead").textContent = `${oa.render_ahead_s} s of the program on air rendered ahead` +
        (s.rendering ? `; rendering ${s.rendering}` : "");
      $("seq").textContent = `media ${s.media_sequence}, discontinuity ${s.discontinuity_sequence}, ` +
        `live edge ${s.live_edge}`;
      $("errors").textContent = (s.errors || []).map((e) => `${e.at} ${e.level}: ${e.message}`).join("\n") +
        (s.disk_error ? "\n" + s.disk_error : "");
    } catch (e) { /* the next poll will tell */ }
  }

  start();
  setInterval(sample, 250);
  setInterval(status, 1000);
  status();
})();
