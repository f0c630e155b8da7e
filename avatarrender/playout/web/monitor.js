// Monitor page: plays the live channel with hls.js (its defaults: LL-HLS), shows /status.
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
    waitingLog: [],       // {wall, currentTime, buffered, loads} of each
    loads: [],            // the last 12 media loads {wall, sn, part, start, ms}: what the
                          // player fetched before a stall (LEVEL_LOADED too, as sn -1)
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
      // hls.js defaults, as any page embedding the channel would use: the playlist's LL-HLS parts,
      // PART-HOLD-BACK and blocking reloads (CAN-BLOCK-RELOAD) keep it about a second behind air.
      hls = new Hls();
      window.__hls = hls;
      const loaded = (entry) => {
        mon.loads.push(entry);
        if (mon.loads.length > 12) mon.loads.shift();
      };
      hls.on(Hls.Events.FRAG_LOADED, (ev, data) => {
        const f = data.part || data.frag, st = f.stats || {}, ld = st.loading || {};
        loaded({ wall: Date.now(), sn: data.frag.sn, part: data.part ? data.part.index : null,
                 start: f.start, ms: ld.end && ld.start ? Math.round(ld.end - ld.start) : null });
      });
      hls.on(Hls.Events.LEVEL_LOADED, (ev, data) => {
        const d = data.details;
        loaded({ wall: Date.now(), sn: -1, part: d.partList ? d.partList.length : null,
                 start: d.edge, ms: data.stats && data.stats.loading
                   ? Math.round(data.stats.loading.end - data.stats.loading.start) : null });
      });
      hls.on(Hls.Events.ERROR, (ev, data) => {
        mon.errors.push({ type: data.type, details: data.details, fatal: !!data.fatal, at: Date.now() });
        if (data.fatal) {
          mon.fatal = true;
          if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
          // the playlist failing for ~3 s (the playout restarting, a proxy's hiccup) is fatal to
          // hls.js for good: load again until it answers
          else if (data.type === Hls.ErrorTypes.NETWORK_ERROR) setTimeout(() => hls.startLoad(), 2000);
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
      mon.waitingLog.push({ wall: Date.now(), currentTime: video.currentTime, buffered: ranges,
                            loads: mon.loads.slice() });
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
