// Hearth playground: plain JavaScript over the public API (/v1), signed in with a project key.
// No framework and no build step; every request is one a script or SDK could make.

const KEY_STORAGE = "hearth.playground.apiKey";
const API = "/v1";
const $ = (id) => document.getElementById(id);

const state = {
  key: localStorage.getItem(KEY_STORAGE),
  models: [],      // {id, owned_by, created, kind}
  voices: [],      // GET /v1/audio/voices
};

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `The server answered ${status}.`);
    this.status = status;
    this.code = error?.code ?? null;
    this.param = error?.param ?? null;
  }
}

async function errorOf(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const error = new ApiError(response.status, body?.error);
  if (response.status === 401 && state.key) signOut("The server no longer accepts this key. Sign in again.");
  return error;
}

// One call to the API. `json` sends a JSON body, `form` a FormData; `raw` hands back the Response.
async function api(path, { method = "GET", json, form, raw = false, signal, key = state.key } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  let body;
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  if (form !== undefined) body = form;
  const response = await fetch(API + path, { method, headers, body, signal });
  if (!response.ok) throw await errorOf(response);
  return raw ? response : response.json();
}

// Server-sent events read from a fetch response: yields each `data:` payload parsed as JSON.
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = block.split(/\r?\n/).filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const payload = JSON.parse(data);
      if (payload.error) throw new ApiError(500, payload.error);
      yield payload;
    }
  }
}

// ---------------------------------------------------------------- small helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return node;
}

function showError(node, error) {
  if (!error) { node.hidden = true; node.textContent = ""; return; }
  node.textContent = error.message || String(error);
  node.hidden = false;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

function seconds(s) { return Number.isFinite(s) ? `${s.toFixed(2)} s` : "–"; }

function clock(s) {
  const whole = Math.floor(s);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function date(unix, { time = true } = {}) {
  if (!unix) return "–";
  return new Date(unix * 1000).toLocaleString(undefined, time ? { dateStyle: "medium", timeStyle: "short" }
    : { dateStyle: "medium" });
}

let toastTimer;
function toast(message) {
  const node = $("toast");
  node.textContent = message;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, 3500);
}

function fillSelect(select, options, preferred) {
  const previous = select.value;
  select.replaceChildren();
  for (const option of options) {
    if (option.group) {
      select.append(el("optgroup", { label: option.group },
        option.options.map((o) => el("option", { value: o.value }, o.label ?? o.value))));
    } else {
      select.append(el("option", { value: option.value }, option.label ?? option.value));
    }
  }
  const values = [...select.querySelectorAll("option")].map((o) => o.value);
  select.value = [previous, ...preferred].find((v) => values.includes(v)) ?? values[0] ?? "";
  select.disabled = values.length === 0;
}

// What a model is for, from its name alone: /v1/models carries no kind, so speech models are the ones
// /v1/audio/voices names (and OpenAI's TTS names), the rest known by their well-known names.
function kindOf(id, speechModels) {
  if (speechModels.has(id) || /(^|-)tts(-|$)/i.test(id)) return "speech";
  if (/whisper|transcri/i.test(id)) return "transcription";
  if (/embed|minilm|mpnet|bge-/i.test(id)) return "embeddings";
  if (/moderation/i.test(id)) return "moderation";
  if (/dall-e|gpt-image|chatgpt-image|(^|-)sd(xl)?-|stable-diffusion|diffusion|flux/i.test(id)) return "image";
  if (/realtime|(^|-)audio-/i.test(id)) return "other";
  return "chat";
}

function modelsOf(kind) { return state.models.filter((m) => m.kind === kind).map((m) => m.id); }

// ---------------------------------------------------------------- sign-in and navigation

function signOut(message) {
  localStorage.removeItem(KEY_STORAGE);
  state.key = null;
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-key").value = "";
  showError($("signin-error"), message ? { message } : null);
  $("signin-key").focus();
}

async function signIn(key) {
  // The key is good when it can list this server's models.
  const models = await api("/models", { key });
  localStorage.setItem(KEY_STORAGE, key);
  state.key = key;
  await loadCatalog(models);
  $("key-label").textContent = `${key.slice(0, 8)}…${key.slice(-4)}`;
  $("signin").hidden = true;
  $("app").hidden = false;
  route();
}

async function loadCatalog(models) {
  let voices = [];
  try { voices = (await api("/audio/voices")).data; } catch (error) { if (error.status === 401) throw error; }
  state.voices = voices;
  const speechModels = new Set(voices.map((v) => v.model));
  state.models = models.data.map((m) => ({ ...m, kind: kindOf(m.id, speechModels) }));
  const speech = [...speechModels, ...modelsOf("speech").filter((id) => !speechModels.has(id))];
  fillSelect($("speech-model"), speech.map((value) => ({ value })), speech);
  fillVoices();
  fillSelect($("tx-model"), modelsOf("transcription").map((value) => ({ value })), ["whisper-1"]);
  fillSelect($("chat-model"), modelsOf("chat").map((value) => ({ value })), []);
  $("tx-go").disabled = !transcription.file || $("tx-model").disabled;
}

const VIEWS = ["speech", "transcription", "chat", "project"];

function route() {
  if ($("app").hidden) return;
  const name = location.hash.slice(1);
  const view = VIEWS.includes(name) ? name : "speech";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.dataset.view !== view;
  for (const link of document.querySelectorAll(".nav a")) link.classList.toggle("active", link.dataset.view === view);
  document.title = `${view[0].toUpperCase()}${view.slice(1)} · Hearth playground`;
  document.body.dataset.view = view;
  if (view === "project") loadProject();
}

// ---------------------------------------------------------------- speech

const AUDIO_TYPES = { mp3: "audio/mpeg", wav: "audio/wav", opus: "audio/ogg", aac: "audio/aac",
  flac: "audio/flac", pcm: "audio/L16" };
const speech = { controller: null, url: null, downloadUrl: null };

function fillVoices() {
  const model = $("speech-model").value;
  const own = state.voices.filter((v) => v.model === model);
  const voices = own.length ? own : state.voices;
  const languages = [...new Set(voices.map((v) => v.language))];
  fillSelect($("speech-voice"), languages.map((language) => ({
    group: language,
    options: voices.filter((v) => v.language === language)
      .map((v) => ({ value: v.id, label: v.openai_alias ? `${v.name} (${v.openai_alias})` : v.name })),
  })), ["af_alloy", voices.find((v) => v.openai_alias)?.id]);
}

function speechStatus(text, live = false) {
  const node = $("speech-status");
  node.textContent = text;
  node.className = live ? "live" : "";
}

// 16-bit little-endian mono PCM at 24 kHz (the API's `pcm`) wrapped as WAV so a player can open it.
function wavOf(pcm, rate = 24000) {
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, s) => [...s].forEach((c, i) => header.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); header.setUint32(4, 36 + pcm.size, true); text(8, "WAVE"); text(12, "fmt ");
  header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, rate, true); header.setUint32(28, rate * 2, true); header.setUint16(32, 2, true);
  header.setUint16(34, 16, true); text(36, "data"); header.setUint32(40, pcm.size, true);
  return new Blob([header.buffer, pcm], { type: "audio/wav" });
}

function appendTo(buffer, chunk) {
  return new Promise((resolve, reject) => {
    buffer.addEventListener("updateend", resolve, { once: true });
    buffer.addEventListener("error", () => reject(new Error("The browser could not play this audio.")), { once: true });
    buffer.appendBuffer(chunk);
  });
}

async function speak(event) {
  event.preventDefault();
  speech.controller?.abort();
  const controller = new AbortController();
  speech.controller = controller;
  const format = $("speech-format").value;
  const audio = $("speech-audio");
  const body = {
    model: $("speech-model").value,
    voice: $("speech-voice").value,
    input: $("speech-input").value,
    response_format: format,
    speed: Number($("speech-speed").value),
  };
  showError($("speech-error"), null);
  $("speech-download").hidden = true;
  $("speech-go").disabled = true;
  $("speech-stop").disabled = false;
  $("speech-first").textContent = "–";
  $("speech-bytes").textContent = "–";
  if (speech.url) URL.revokeObjectURL(speech.url);
  speech.url = null;
  audio.pause();
  audio.removeAttribute("src");
  audio.load();

  // mp3 goes into a MediaSource, so it plays while the rest is still being synthesized.
  const streaming = format === "mp3" && "MediaSource" in window && MediaSource.isTypeSupported("audio/mpeg");
  let source = null;
  if (streaming) {
    source = new MediaSource();
    speech.url = URL.createObjectURL(source);
    audio.src = speech.url;
    audio.play().catch(() => {});   // started within the click, so autoplay rules allow it once data arrives
  }
  $("speech-mode").textContent = streaming ? "While streaming" : "Once complete";
  audio.dataset.mode = streaming ? "stream" : "complete";
  speechStatus("Synthesizing…", true);

  const started = performance.now();
  const chunks = [];
  let received = 0;
  try {
    const opened = source && new Promise((resolve) => source.addEventListener("sourceopen", resolve, { once: true }));
    const response = await api("/audio/speech", { method: "POST", json: body, raw: true, signal: controller.signal });
    const buffer = source && (await opened, source.addSourceBuffer("audio/mpeg"));
    const reader = response.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (!received) $("speech-first").textContent = seconds((performance.now() - started) / 1000);
      received += value.byteLength;
      chunks.push(value);
      $("speech-bytes").textContent = `${bytes(received)} in ${chunks.length} ${chunks.length === 1 ? "piece" : "pieces"}`;
      audio.dataset.chunks = String(chunks.length);
      if (buffer) await appendTo(buffer, value);
    }
    const blob = new Blob(chunks, { type: AUDIO_TYPES[format] });
    if (source) {
      if (source.readyState === "open") source.endOfStream();
    } else {
      speech.url = URL.createObjectURL(format === "pcm" ? wavOf(blob) : blob);
      audio.src = speech.url;
      audio.play().catch(() => {});
    }
    if (speech.downloadUrl) URL.revokeObjectURL(speech.downloadUrl);
    speech.downloadUrl = URL.createObjectURL(blob);
    const link = $("speech-download");
    link.href = speech.downloadUrl;
    link.download = `speech.${format}`;
    link.hidden = false;
    speechStatus(`Done in ${seconds((performance.now() - started) / 1000)}`);
  } catch (error) {
    if (error.name === "AbortError") speechStatus("Stopped");
    else { speechStatus("Failed"); showError($("speech-error"), error); }
    if (source?.readyState === "open") { try { source.endOfStream(); } catch { /* already ended */ } }
  } finally {
    if (speech.controller === controller) {
      speech.controller = null;
      $("speech-go").disabled = false;
      $("speech-stop").disabled = true;
    }
  }
}

// ---------------------------------------------------------------- transcription

const transcription = { file: null, url: null, recorder: null, words: [], spans: [], current: -1 };

function chooseAudio(file, label) {
  transcription.file = file;
  if (transcription.url) URL.revokeObjectURL(transcription.url);
  transcription.url = URL.createObjectURL(file);
  $("tx-audio").src = transcription.url;
  $("tx-source").replaceChildren(el("strong", {}, label), ` · ${bytes(file.size)}`);
  $("tx-go").disabled = $("tx-model").disabled;
  resetTranscript("Press Transcribe to read this audio.");
}

function resetTranscript(text) {
  const box = $("tx-transcript");
  box.className = "transcript empty";
  box.textContent = text;
  transcription.words = [];
  transcription.spans = [];
  transcription.current = -1;
  for (const id of ["tx-lang", "tx-duration", "tx-words", "tx-took"]) $(id).textContent = "–";
}

async function toggleRecording() {
  if (transcription.recorder) { transcription.recorder.stop(); return; }
  showError($("tx-error"), null);
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    showError($("tx-error"), { message: `The microphone is not available: ${error.message}` });
    return;
  }
  const type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4"]
    .find((t) => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
  const parts = [];
  const context = new AudioContext();
  context.resume().catch(() => {});
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const began = performance.now();
  const tick = () => {
    if (transcription.recorder !== recorder) return;
    analyser.getFloatTimeDomainData(samples);
    const peak = samples.reduce((m, s) => Math.max(m, Math.abs(s)), 0);
    $("tx-level").style.width = `${Math.min(100, peak * 140)}%`;
    $("tx-timer").textContent = clock((performance.now() - began) / 1000);
    requestAnimationFrame(tick);
  };
  recorder.addEventListener("dataavailable", (e) => { if (e.data.size) parts.push(e.data); });
  recorder.addEventListener("stop", () => {
    stream.getTracks().forEach((track) => track.stop());
    context.close();
    transcription.recorder = null;
    $("tx-record").classList.remove("recording");
    $("tx-record-label").textContent = "Record";
    $("tx-level").style.width = "0";
    const mime = recorder.mimeType || "audio/webm";
    const extension = mime.includes("ogg") ? "ogg" : mime.includes("mp4") ? "m4a" : "webm";
    const blob = new Blob(parts, { type: mime });
    chooseAudio(new File([blob], `recording.${extension}`, { type: mime }),
      `Recording (${clock((performance.now() - began) / 1000)})`);
  });
  transcription.recorder = recorder;
  recorder.start(250);
  $("tx-record").classList.add("recording");
  $("tx-record-label").textContent = "Stop";
  requestAnimationFrame(tick);
}

async function transcribe(event) {
  event.preventDefault();
  if (!transcription.file) return;
  const form = new FormData();
  form.append("file", transcription.file, transcription.file.name || "audio");
  form.append("model", $("tx-model").value);
  form.append("response_format", "verbose_json");
  form.append("timestamp_granularities[]", "word");
  form.append("timestamp_granularities[]", "segment");
  const language = $("tx-language").value.trim();
  if (language) form.append("language", language);
  showError($("tx-error"), null);
  $("tx-go").disabled = true;
  resetTranscript("Transcribing…");
  const started = performance.now();
  try {
    const result = await api("/audio/transcriptions", { method: "POST", form });
    $("tx-took").textContent = seconds((performance.now() - started) / 1000);
    showTranscript(result);
  } catch (error) {
    resetTranscript("No transcript.");
    showError($("tx-error"), error);
  } finally {
    $("tx-go").disabled = false;
  }
}

function showTranscript(result) {
  // Words when the model timed them; otherwise segments, each highlighted as a whole.
  const timed = result.words?.length ? result.words.map((w) => ({ text: w.word, start: w.start, end: w.end }))
    : (result.segments ?? []).map((s) => ({ text: s.text, start: s.start, end: s.end }));
  const box = $("tx-transcript");
  box.className = "transcript";
  box.replaceChildren();
  transcription.words = timed;
  transcription.spans = timed.map((word, index) => {
    const span = el("span", {
      class: "word", title: `${word.start.toFixed(2)}–${word.end.toFixed(2)} s`,
      dataset: { start: word.start, end: word.end, index },
      onclick: () => { const audio = $("tx-audio"); audio.currentTime = word.start; audio.play(); },
    }, word.text.trim());
    box.append(span, " ");
    return span;
  });
  if (!timed.length) { box.className = "transcript empty"; box.textContent = result.text || "No speech found."; }
  $("tx-lang").textContent = result.language ?? "–";
  $("tx-duration").textContent = seconds(result.duration);
  $("tx-words").textContent = String(result.words?.length ?? 0);
}

// Highlight the word at the playhead: on every frame while playing, and whenever the time jumps.
function highlight() {
  const audio = $("tx-audio");
  const t = audio.currentTime;
  const words = transcription.words;
  let index = -1;
  for (let lo = 0, hi = words.length - 1; lo <= hi;) {
    const mid = (lo + hi) >> 1;
    if (words[mid].start <= t) { index = mid; lo = mid + 1; } else hi = mid - 1;
  }
  if (index >= 0 && t > words[index].end + 0.25) index = -1;
  if (index !== transcription.current) {
    transcription.spans[transcription.current]?.classList.remove("current");
    const span = transcription.spans[index];
    if (span) {
      span.classList.add("current");
      span.scrollIntoView({ block: "nearest" });
    }
    transcription.current = index;
  }
  transcription.spans.forEach((span, i) => span.classList.toggle("spoken", words[i].end <= t));
  $("tx-transcript").classList.toggle("playing", !audio.paused);
}

function followPlayback() {
  const audio = $("tx-audio");
  const frame = () => { highlight(); if (!audio.paused) requestAnimationFrame(frame); };
  audio.addEventListener("play", () => requestAnimationFrame(frame));
  for (const name of ["seeked", "timeupdate", "pause", "ended"]) audio.addEventListener(name, highlight);
}

// ---------------------------------------------------------------- chat

const chat = { messages: [], controller: null };

function chatMessage(role, text, meta) {
  $("chat-empty").hidden = true;
  const bubble = el("div", { class: "bubble" }, text);
  const info = el("div", { class: "meta" }, meta ?? "");
  const node = el("div", { class: `msg ${role}` }, bubble, info);
  $("chat-log").append(node);
  node.scrollIntoView({ block: "end" });
  return { node, bubble, info };
}

async function send(event) {
  event?.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || chat.controller) return;
  input.value = "";
  chat.messages.push({ role: "user", content: text });
  chatMessage("user", text);
  const system = $("chat-system").value.trim();
  const model = $("chat-model").value;
  const body = {
    model,
    messages: [...(system ? [{ role: "system", content: system }] : []), ...chat.messages],
    temperature: Number($("chat-temperature").value),
    max_tokens: Number($("chat-max-tokens").value) || undefined,
    stream: true,
    stream_options: { include_usage: true },
  };
  const answer = chatMessage("assistant", "");
  answer.node.classList.add("streaming");
  answer.node.dataset.chunks = "0";
  const controller = new AbortController();
  chat.controller = controller;
  $("chat-send").hidden = true;
  $("chat-stop").hidden = false;
  const started = performance.now();
  let first = null;
  let answerText = "";
  let usage = null;
  let finish = null;
  try {
    const response = await api("/chat/completions", { method: "POST", json: body, raw: true, signal: controller.signal });
    for await (const chunk of events(response)) {
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      if (!choice) continue;
      if (choice.finish_reason) finish = choice.finish_reason;
      const delta = choice.delta?.content;
      if (!delta) continue;
      first ??= performance.now();
      answerText += delta;
      answer.bubble.textContent = answerText;
      answer.node.dataset.chunks = String(Number(answer.node.dataset.chunks) + 1);
      answer.node.scrollIntoView({ block: "end" });
    }
    chat.messages.push({ role: "assistant", content: answerText });
    const ended = performance.now();
    const parts = [model, `first token ${seconds(((first ?? ended) - started) / 1000)}`];
    if (usage) parts.push(`${usage.completion_tokens} tokens`);
    // Decoding speed: the tokens after the first, over the time since the first.
    if (usage && first && ended > first && usage.completion_tokens > 1) {
      parts.push(`${((usage.completion_tokens - 1) / ((ended - first) / 1000)).toFixed(1)} tok/s`);
    }
    if (finish && finish !== "stop") parts.push(`finish: ${finish}`);
    answer.info.textContent = parts.join(" · ");
  } catch (error) {
    if (error.name === "AbortError") {
      chat.messages.push({ role: "assistant", content: answerText });
      answer.info.textContent = "Stopped";
    } else {
      answer.node.classList.add("error");
      answer.bubble.textContent = answerText ? `${answerText}\n\n${error.message}` : error.message;
      chat.messages.pop();
    }
  } finally {
    answer.node.classList.remove("streaming");
    answer.node.dataset.done = "true";
    chat.controller = null;
    $("chat-send").hidden = false;
    $("chat-stop").hidden = true;
    input.focus();
  }
}

function clearChat() {
  chat.controller?.abort();
  chat.messages = [];
  $("chat-log").replaceChildren($("chat-empty"));
  $("chat-empty").hidden = false;
}

// ---------------------------------------------------------------- project

const STATUS = {
  ok: ["processed", "completed", "succeeded"],
  bad: ["failed", "error", "expired", "cancelled"],
  warn: ["cancelling", "finalizing", "validating", "queued", "pending", "uploaded"],
  info: ["in_progress", "running", "validating_files"],
};

function badge(status) {
  const tone = Object.keys(STATUS).find((key) => STATUS[key].includes(status)) ?? "";
  return el("span", { class: `badge ${tone}` }, status ?? "–");
}

function rows(body, items, render, empty) {
  body.replaceChildren(...(items.length ? items.map(render)
    : [el("tr", { class: "empty-row" }, el("td", { colspan: body.closest("table").tHead.rows[0].cells.length }, empty))]));
}

async function loadProject() {
  showError($("project-error"), null);
  const problems = [];
  const models = api("/models").then((list) => {
    const speechModels = new Set(state.voices.map((v) => v.model));
    state.models = list.data.map((m) => ({ ...m, kind: kindOf(m.id, speechModels) }));
    $("count-models").textContent = String(list.data.length);
    rows($("models-body"), state.models, (m) => el("tr", {},
      el("td", { class: "id" }, m.id), el("td", {}, el("span", { class: "kind" }, m.kind)),
      el("td", {}, modelStatus(m)), el("td", {}, m.owned_by), el("td", {}, date(m.created, { time: false }))),
    "No models are served.");
  });
  const files = api("/files?limit=100&order=desc").then((list) => {
    $("count-files").textContent = String(list.data.length);
    rows($("files-body"), list.data, (f) => el("tr", {},
      el("td", { class: "id" }, f.id), el("td", {}, f.filename), el("td", {}, f.purpose),
      el("td", { class: "num" }, bytes(f.bytes ?? 0)), el("td", {}, badge(f.status)), el("td", {}, date(f.created_at)),
      el("td", { class: "right" }, el("button", {
        class: "btn small ghost danger", type: "button", onclick: () => deleteFile(f),
      }, "Delete"))), "No files yet. Upload one above.");
  });
  const batches = api("/batches?limit=100").then((list) => {
    $("count-batches").textContent = String(list.data.length);
    rows($("batches-body"), list.data, (b) => {
      const counts = b.request_counts ?? { total: 0, completed: 0, failed: 0 };
      const done = counts.completed + counts.failed;
      const share = counts.total ? Math.round((100 * done) / counts.total) : 0;
      const active = ["validating", "in_progress", "finalizing"].includes(b.status);
      return el("tr", {},
        el("td", { class: "id" }, b.id), el("td", {}, el("code", {}, b.endpoint)), el("td", {}, badge(b.status)),
        el("td", {}, el("span", { class: "progress" }, el("span", { class: "bar" }, el("i", { style: `width:${share}%` })),
          `${done}/${counts.total}${counts.failed ? ` (${counts.failed} failed)` : ""}`)),
        el("td", {}, date(b.created_at)),
        el("td", { class: "right" }, active ? el("button", {
          class: "btn small ghost danger", type: "button", onclick: () => cancelBatch(b),
        }, "Cancel") : null));
    }, "No batches yet.");
  });
  // Fine-tuning is listed only where the server answers it; a 404 hides the tab.
  const tuning = api("/fine_tuning/jobs?limit=100").then((list) => {
    $("tab-fine-tuning").hidden = false;
    $("count-fine-tuning").textContent = String(list.data.length);
    rows($("fine-tuning-body"), list.data, (j) => el("tr", {},
      el("td", { class: "id" }, j.id), el("td", {}, j.model), el("td", {}, badge(j.status)),
      el("td", { class: "id" }, j.fine_tuned_model ?? "–"), el("td", {}, date(j.created_at))), "No fine-tuning jobs yet.");
  }, (error) => {
    if (error.status !== 404) throw error;
    $("tab-fine-tuning").hidden = true;
    if (selectedTab() === "fine-tuning") selectTab("models");
  });
  for (const result of await Promise.allSettled([models, files, batches, tuning])) {
    if (result.status === "rejected") problems.push(result.reason.message);
  }
  if (problems.length) showError($("project-error"), { message: problems.join(" ") });
  document.body.dataset.projectLoaded = "true";
}

// Hearth says whether a model is in memory (`loaded`, `device`); a server that does not is read as "available".
function modelStatus(model) {
  if (model.loaded === undefined) return el("span", { class: "badge ok" }, "available");
  if (!model.loaded) return el("span", { class: "badge" }, "loads on first use");
  return el("span", { class: "badge ok" }, model.device ? `loaded · ${model.device}` : "loaded");
}

function selectedTab() { return document.querySelector(".tabs [aria-selected=true]")?.dataset.tab; }

function selectTab(name) {
  for (const tab of document.querySelectorAll(".tabs [role=tab]")) tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  for (const panel of document.querySelectorAll(".tab-panel")) panel.hidden = panel.dataset.panel !== name;
}

async function uploadFile() {
  const input = $("file-upload");
  const file = input.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("purpose", $("file-purpose").value);
  form.append("file", file, file.name);
  $("file-upload-status").textContent = `Uploading ${file.name}…`;
  try {
    await api("/files", { method: "POST", form });
    toast(`Uploaded ${file.name}`);
  } catch (error) {
    showError($("project-error"), error);
  } finally {
    $("file-upload-status").textContent = "";
    input.value = "";
    loadProject();
  }
}

async function deleteFile(file) {
  if (!confirm(`Delete ${file.filename} (${file.id})?`)) return;
  try { await api(`/files/${file.id}`, { method: "DELETE" }); toast(`Deleted ${file.filename}`); }
  catch (error) { showError($("project-error"), error); }
  loadProject();
}

async function cancelBatch(batch) {
  try { await api(`/batches/${batch.id}/cancel`, { method: "POST" }); toast(`Cancelling ${batch.id}`); }
  catch (error) { showError($("project-error"), error); }
  loadProject();
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("signin-key").value.trim();
    $("signin-submit").disabled = true;
    showError($("signin-error"), null);
    try { await signIn(key); }
    catch (error) {
      showError($("signin-error"), error.status === 401 ? { message: "This server does not accept that key." } : error);
    } finally { $("signin-submit").disabled = false; }
  });
  $("signout").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", route);

  // Speech
  $("speech-form").addEventListener("submit", speak);
  $("speech-stop").addEventListener("click", () => { speech.controller?.abort(); $("speech-audio").pause(); });
  $("speech-model").addEventListener("change", fillVoices);
  const count = () => { $("speech-count").textContent = `${$("speech-input").value.length} / 4096`; };
  $("speech-input").addEventListener("input", count);
  count();
  const speed = () => { $("speech-speed-value").textContent = `${Number($("speech-speed").value).toFixed(2)}×`; };
  $("speech-speed").addEventListener("input", speed);
  speed();

  // Transcription
  $("tx-form").addEventListener("submit", transcribe);
  $("tx-file").addEventListener("change", () => {
    const file = $("tx-file").files[0];
    if (file) chooseAudio(file, file.name);
  });
  const drop = $("tx-drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) chooseAudio(file, file.name);
  });
  $("tx-record").addEventListener("click", toggleRecording);
  if (!("MediaRecorder" in window) || !navigator.mediaDevices?.getUserMedia) {
    $("tx-record").disabled = true;
    $("tx-record").title = "Recording needs a secure context (https or localhost) and a microphone.";
  }
  followPlayback();

  // Chat
  $("chat-form").addEventListener("submit", send);
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
  });
  $("chat-stop").addEventListener("click", () => chat.controller?.abort());
  $("chat-clear").addEventListener("click", clearChat);
  const temperature = () => { $("chat-temperature-value").textContent = Number($("chat-temperature").value).toFixed(1); };
  $("chat-temperature").addEventListener("input", temperature);
  temperature();

  // Project
  for (const tab of document.querySelectorAll(".tabs [role=tab]")) tab.addEventListener("click", () => selectTab(tab.dataset.tab));
  $("project-refresh").addEventListener("click", loadProject);
  $("file-upload").addEventListener("change", uploadFile);
}

async function start() {
  wire();
  if (!state.key) { signOut(); return; }
  try { await signIn(state.key); }
  catch (error) { signOut(error.status === 401 ? "This server no longer accepts the saved key." : error.message); }
}

start();
