"""The one page ``serve`` hands out: the avatar, a mic button, status, transcript, latency;
with ``server.avatar: per_session`` also a portrait upload (checked by ``POST /avatar``).

Everything the page sees is also kept in ``window.avatarStats`` (reply audio and video
frames received, per-turn latency measured in the browser, mouth motion in the frames),
so a test can read it through the DevTools protocol.
"""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>avatar_agent</title>
<style>
 body{font-family:system-ui,sans-serif;margin:0;background:#15171a;color:#e8e8e8;display:flex;
      flex-direction:column;align-items:center}
 main{max-width:560px;width:100%;padding:12px;box-sizing:border-box}
 video{width:100%;aspect-ratio:1;background:#000;border-radius:8px}
 #bar{display:flex;gap:10px;align-items:center;margin:10px 0}
 button{font-size:16px;padding:8px 16px;border-radius:6px;border:0;background:#3a7bd5;color:#fff}
 #status{font-weight:600}#status.listening{color:#5c5}#status.thinking{color:#fb4}
 #status.speaking{color:#f84}#status.error{color:#f55}
 #log{font-size:14px;line-height:1.4;max-height:40vh;overflow:auto}
 .you{color:#9cf}.lat{color:#888;font-size:12px}.bad{color:#f55;font-size:13px}
 #portraitRow{font-size:14px;margin:0 0 10px}
</style></head><body><main>
<video id="avatar" autoplay playsinline></video>
<div id="bar"><button id="mic">Start microphone</button>
<span id="status">idle</span><span id="latency" class="lat"></span></div>
<div id="portraitRow" hidden><label>Your portrait (jpg/png):
<input type="file" id="portrait" accept="image/jpeg,image/png,image/webp"></label>
<div id="pstat" class="lat"></div></div>
<div id="log"></div>
</main>
<script>
"use strict";
const ICE_SERVERS = __ICE_SERVERS__;  // server.ice_servers (STUN/TURN), filled in by the server
const AVATAR_MODE = __AVATAR_MODE__, AVATAR_MAX_MB = __AVATAR_MAX_MB__;  // server.avatar*
const q = new URLSearchParams(location.search);
const S = window.avatarStats = {
  state: "idle", session: null, error: null, turns: [], user: [], assistant: [],
  audioPackets: 0, audioEnergy: 0, audioSamples: 0, replyAudioAt: [], videoFrames: 0,
  framesDecoded: 0, avSkewMs: [], motionSpeaking: [], motionListening: [], latencyMs: [], ended: false,
  // for `bench serve`: when the microphone opened, when the user stopped speaking (the
  // local track's level, from getStats), when reply sound started playing (each onset
  // after >= 0.4 s of silence); performance.now() ms
  micStartAt: null, micEnds: [], replyOnsets: [],
  avatar: null, avatarError: null,  // the uploaded portrait (per_session), or why it was refused
};
const video = document.getElementById("avatar"), btn = document.getElementById("mic");
const statusEl = document.getElementById("status"), logEl = document.getElementById("log");
let pc = null, dc = null, mic = null, poll = null, hearingAt = null, sinceEnd = 0;
let avatarId = "";
let micE = null, micD = 0, micLoudSince = null, micLastLoud = 0, lastLoudOut = -1e9;

function line(cls, text) {
  const d = document.createElement("div"); d.className = cls; d.textContent = text;
  logEl.appendChild(d); logEl.scrollTop = logEl.scrollHeight;
}
function setStatus(s) { S.state = s; statusEl.textContent = s; statusEl.className = s; }
function fail(text) { S.error = text; setStatus("error"); line("lat", "error: " + text); }

function onEvent(m) {
  if (!pc) return;  // stopped: a message still in flight from the old session changes nothing
  if (m.type === "status") setStatus(m.state);
  else if (m.type === "session") { S.session = m.id; if (m.mouth) mouth = m.mouth; }
  else if (m.type === "hearing") { hearingAt = performance.now(); sinceEnd = m.since_end_ms; }
  else if (m.type === "user") { S.user.push(m.text); line("you", "you: " + m.text); }
  else if (m.type === "assistant") { S.assistant.push(m.text); line("", "avatar: " + m.text); }
  else if (m.type === "turn") {
    S.turns.push(m);
    if (m.voice_to_face_ms != null)
      document.getElementById("latency").textContent = "server voice-to-face " + m.voice_to_face_ms + " ms";
  } else if (m.type === "error") fail(m.text);
}

// reply audio arrival: inbound-rtp audioLevel / totalAudioEnergy from getStats
async function pollStats() {
  if (!pc) return;
  const stats = await pc.getStats();
  let aPlay = null, vPlay = null;
  stats.forEach(r => {
    if (r.type === "inbound-rtp" && r.estimatedPlayoutTimestamp)
      r.kind === "audio" ? (aPlay = r.estimatedPlayoutTimestamp) : (vPlay = r.estimatedPlayoutTimestamp);
    if (r.type === "media-source" && r.kind === "audio") micLevel(r);
    if (r.type !== "inbound-rtp") return;
    if (r.kind === "audio") {
      S.audioPackets = r.packetsReceived || 0;
      S.audioSamples = r.totalSamplesReceived || 0;
      const e = r.totalAudioEnergy || 0, loud = e - S.audioEnergy > 1e-4, now = performance.now();
      S.audioEnergy = e;
      if (loud) {
        if (now - lastLoudOut > 400 && S.replyOnsets.length < 5000) S.replyOnsets.push(now);
        lastLoudOut = now;
      }
      if (loud && hearingAt !== null) {  // first reply sound since the server heard us
        const ms = performance.now() - hearingAt + sinceEnd;
        S.replyAudioAt.push(performance.now()); S.latencyMs.push(Math.round(ms));
        document.getElementById("latency").textContent = "reply after " + Math.round(ms) + " ms";
        hearingAt = null;
      }
    } else if (r.kind === "video") S.framesDecoded = r.framesDecoded || 0;
  });
  // A/V skew as played: the sender times (from its RTCP reports) of the audio and of
  // the video being played out now; positive = video behind the audio
  if (aPlay !== null && vPlay !== null && S.avSkewMs.length < 2000)
    S.avSkewMs.push(Math.round(aPlay - vPlay));
}

// the user's speech ends: the microphone's mean level over each poll, loud for >= 0.25 s
// then quiet for 0.7 s -> an end at the last loud poll
function micLevel(r) {
  const e = r.totalAudioEnergy || 0, d = r.totalSamplesDuration || 0, now = performance.now();
  if (micE !== null && d > micD) {
    if ((e - micE) / (d - micD) > 1e-5) {
      if (micLoudSince === null) micLoudSince = now;
      micLastLoud = now;
    } else if (micLoudSince !== null && now - micLastLoud > 700) {
      if (micLastLoud - micLoudSince >= 250 && S.micEnds.length < 5000) S.micEnds.push(micLastLoud);
      micLoudSince = null;
    }
  }
  micE = e; micD = d;
}

// mouth motion: mean change of the lower face (box from the server) between frames
const N = 256, cv = document.createElement("canvas"); cv.width = N; cv.height = N;
const cx = cv.getContext("2d", {willReadFrequently: true}); let prev = null;
let mouth = [0.3, 0.55, 0.7, 0.9];
function onFrame() {
  S.videoFrames++;
  try {
    cx.drawImage(video, 0, 0, N, N);
    const x = Math.floor(mouth[0] * N), y = Math.floor(mouth[1] * N);
    const w = Math.max(2, Math.ceil((mouth[2] - mouth[0]) * N)), h = Math.max(2, Math.ceil((mouth[3] - mouth[1]) * N));
    const px = cx.getImageData(x, y, w, h).data;
    if (prev) {
      let d = 0; for (let i = 0; i < px.length; i += 4) d += Math.abs(px[i + 1] - prev[i + 1]);
      d /= px.length / 4;
      const list = S.state === "speaking" ? S.motionSpeaking : S.motionListening;
      if (list.length < 5000) list.push(Math.round(d * 100) / 100);
    }
    prev = px;
  } catch (e) { /* frame not ready */ }
  video.requestVideoFrameCallback(onFrame);
}

// per_session: the visitor's own portrait, checked by the server before it is used
const pstat = document.getElementById("pstat");
function portraitError(text) {
  S.avatarError = text; pstat.className = "bad";
  pstat.textContent = "portrait refused: " + text + " (the usual avatar is shown)";
}
async function upload(file) {
  avatarId = ""; S.avatar = null; S.avatarError = null; pstat.textContent = "";
  video.removeAttribute("poster");
  if (!file) return;
  if (file.size > AVATAR_MAX_MB * 1024 * 1024)
    return portraitError("the portrait is larger than " + AVATAR_MAX_MB + " MB: use a smaller jpg or png");
  pstat.className = "lat"; pstat.textContent = "checking the portrait...";
  const busy = !pc; if (busy) btn.disabled = true;
  try {
    const r = await fetch("avatar?token=" + encodeURIComponent(q.get("token") || ""),
      {method: "POST", body: file, headers: {"Content-Type": file.type || "application/octet-stream"}});
    const body = await r.json().catch(() => ({error: "HTTP " + r.status}));
    if (!r.ok) return portraitError(body.error || ("HTTP " + r.status));
    avatarId = body.avatar; S.avatar = body;
    pstat.className = "lat";
    pstat.textContent = "portrait ready (" + body.width + "x" + body.height + ")" +
      (pc ? ": shown when the microphone starts again" : "");
    if (!pc) video.poster = URL.createObjectURL(file);
  } catch (e) { portraitError(e.message); }
  finally { if (busy) btn.disabled = false; }
}
if (AVATAR_MODE === "per_session") {
  document.getElementById("portraitRow").hidden = false;
  document.getElementById("portrait").onchange = e => upload(e.target.files[0]);
}

async function start() {
  btn.disabled = true; setStatus("connecting");
  try {
    mic = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: true,
      noiseSuppression: true, autoGainControl: true}});
  } catch (e) { btn.disabled = false; return fail("no microphone: " + e.message); }
  S.micStartAt = performance.now();
  pc = new RTCPeerConnection({iceServers: ICE_SERVERS});
  mic.getTracks().forEach(t => pc.addTrack(t, mic));
  pc.addTransceiver("video", {direction: "recvonly"});
  dc = pc.createDataChannel("events");
  dc.onmessage = e => onEvent(JSON.parse(e.data));
  pc.ontrack = e => {
    if (!video.srcObject) video.srcObject = e.streams[0] || new MediaStream();
    if (!e.streams[0]) video.srcObject.addTrack(e.track);
    video.play().catch(() => { video.muted = true; video.play(); line("lat", "click the page for sound"); });
  };
  pc.onconnectionstatechange = () => {
    if (["failed", "closed"].includes(pc.connectionState)) stop("connection " + pc.connectionState);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => {
    if (pc.iceGatheringState === "complete") return r();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && r());
    setTimeout(r, 3000);
  });
  const resp = await fetch("offer", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({sdp: pc.localDescription.sdp, type: "offer", token: q.get("token") || "",
                          avatar: avatarId})});
  const body = await resp.json().catch(() => ({error: "bad answer from the server"}));
  if (!resp.ok) { stop(); return fail(body.error || ("HTTP " + resp.status)); }
  S.session = body.session;
  await pc.setRemoteDescription(body);
  poll = setInterval(pollStats, 50);
  video.requestVideoFrameCallback(onFrame);
  btn.textContent = "Stop microphone"; btn.disabled = false;
}

function stop(why) {
  if (dc && dc.readyState === "open") dc.send(JSON.stringify({type: "bye"}));
  if (poll) clearInterval(poll);
  if (mic) mic.getTracks().forEach(t => t.stop());
  if (pc) pc.close();
  pc = dc = mic = poll = null; S.ended = true;
  btn.textContent = "Start microphone"; btn.disabled = false;
  if (S.state !== "error") setStatus(why ? "ended: " + why : "idle");
}

btn.onclick = () => (pc ? stop() : start().catch(e => fail(e.message)));
addEventListener("pagehide", () => { if (pc) stop(); });
if (q.get("autostart") === "1") start().catch(e => fail(e.message));
</script></body></html>
"""
