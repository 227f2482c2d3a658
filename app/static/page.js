// The try-it page: upload a poster to /predict and draw every genre's probability; click a genre to
// see where the model found it (/explain).
"use strict";

const FRIENDLY = {
  empty_file: "That file is empty.",
  invalid_image: "That file is not a poster image we can read. Try a JPEG, PNG, WebP or GIF.",
  unsupported_format: "That image format is not supported. Try a JPEG, PNG, WebP or GIF.",
  payload_too_large: "That file is too large to upload.",
  image_too_large: "That image has too many pixels.",
  overloaded: "The service is busy right now. Please try again in a moment.",
  deadline_exceeded: "The service is busy right now. Please try again in a moment.",
  unavailable: "The service is restarting. Please try again in a moment.",
  unauthorized: "This service needs an API key: enter it in the field above.",
};

const $ = (id) => document.getElementById(id);
let genres = {};
let rule = null; // /genres' decision rule: its kind, cap and plain summary
let lastFile = null;
let posterUrl = null;
let shownGenre = null;
let heatmapRequest = 0; // answers to an older click or an older poster are dropped

function say(text, isError) {
  $("message").textContent = text;
  $("message").classList.toggle("error", Boolean(isError));
}

function percent(p) {
  return (p * 100).toFixed(1) + "%";
}

// The version the page asks for: "" is the service's default. Offered only when several are served.
function versionQuery(separator) {
  const version = $("version").value;
  return version ? separator + "version=" + encodeURIComponent(version) : "";
}

function offerVersions(versions) {
  if (versions.length < 2 || $("version").options.length) return;
  versions.forEach((version, i) => {
    const option = document.createElement("option");
    option.value = i === 0 ? "" : version;
    option.textContent = i === 0 ? version + " (default)" : version;
    $("version").append(option);
  });
  $("version-row").hidden = false;
}

async function loadThresholds() {
  try {
    const answer = await fetch("/genres" + versionQuery("?"));
    if (!answer.ok) return;
    const body = await answer.json();
    genres = Object.fromEntries(body.genres.map((g) => [g.genre, g]));
    rule = body.rule;
    offerVersions(body.versions || []);
    describeRule();
  } catch (error) {
    genres = {};
  }
}

// The page says what the served version's rule is, instead of assuming one.
function describeRule() {
  const marks = rule.kind !== "expected_f1";
  $("explain").textContent =
    "Each bar is one genre's probability" +
    (marks ? "; the dark mark is the threshold it needs. " : ". ") +
    "Predicted (highlighted): " + rule.summary +
    " Click a genre's name to see where in the poster the model found it.";
  $("legend-threshold").hidden = !marks;
  $("legend-passes").hidden = !marks || rule.max_predicted === null;
  $("legend-unmarked").hidden = !marks;
}

function draw(result) {
  const floor = rule ? rule.floor : 0.1;
  const predicted = new Set(result.predicted.map((p) => p.genre));
  const bars = $("bars");
  bars.replaceChildren();
  const sorted = [...result.probabilities].sort((a, b) => b.probability - a.probability);
  for (const item of sorted) {
    const li = document.createElement("li");
    const info = genres[item.genre];
    const marked = info && info.predictable && info.threshold != null;
    const passes = marked && item.probability >= Math.max(info.threshold, floor);
    li.className = "bar" + (predicted.has(item.genre) ? " is-predicted" : passes ? " passes" : "");
    if (passes && !predicted.has(item.genre)) {
      li.title =
        "Past its threshold, but only the " + (rule ? rule.max_predicted : "") +
        " most probable genres are predicted.";
    } else if (info && !info.predictable) {
      li.title = "This model cannot predict " + item.genre + ": too few posters to learn it.";
    }
    li.dataset.genre = item.genre;
    li.dataset.probability = String(item.probability);
    const name = document.createElement("button");
    name.type = "button";
    name.className = "bar-name";
    name.textContent = item.genre;
    name.setAttribute("aria-pressed", "false");
    name.title = "Show where the model found " + item.genre + " in the poster";
    name.addEventListener("click", () => toggleHeatmap(item.genre, name));
    const track = document.createElement("span");
    track.className = "bar-track";
    track.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = percent(item.probability);
    track.append(fill);
    // A mark only where the rule has a threshold to show: none for a genre it never predicts.
    if (marked) {
      const mark = document.createElement("span");
      mark.className = "bar-threshold";
      mark.style.left = percent(Math.max(info.threshold, floor));
      mark.title = "threshold " + percent(Math.max(info.threshold, floor));
      track.append(mark);
    }
    const value = document.createElement("span");
    value.className = "bar-value";
    value.textContent = percent(item.probability);
    li.append(name, track, value);
    if (predicted.has(item.genre)) {
      li.setAttribute("aria-label", item.genre + " " + percent(item.probability) + ", predicted");
    }
    bars.append(li);
  }
  const line = $("predicted");
  line.replaceChildren();
  if (result.predicted.length === 0) {
    line.textContent = "No genre predicted: none is likely enough for the model to say.";
  } else {
    line.append("Predicted: ");
    result.predicted.forEach((p, i) => {
      const strong = document.createElement("strong");
      strong.textContent = p.genre;
      line.append(...(i ? [", ", strong] : [strong]));
    });
  }
  $("image-info").textContent =
    result.image.width + "×" + result.image.height + " " + result.image.format;
  $("model-version").textContent = "Model " + result.model + " " + result.version;
  $("result").hidden = false;
}

function authHeaders() {
  const headers = {};
  const key = sessionStorage.getItem("poster-genres-key");
  if (key) headers["X-API-Key"] = key;
  return headers;
}

function showPoster() {
  shownGenre = null;
  $("preview").src = posterUrl;
  $("preview").alt = "The uploaded poster";
  $("heatmap-caption").hidden = true;
  for (const button of document.querySelectorAll(".bar-name[aria-pressed='true']")) {
    button.setAttribute("aria-pressed", "false");
  }
}

// Clicking a genre shows its heatmap over the poster; clicking it again shows the poster.
async function toggleHeatmap(genre, button) {
  if (shownGenre === genre) {
    showPoster();
    return;
  }
  const asked = ++heatmapRequest;
  const form = new FormData();
  form.append("file", lastFile);
  say("Looking for " + genre + " in the poster…");
  let answer;
  let body = null;
  try {
    answer = await fetch("/explain?genre=" + encodeURIComponent(genre) + versionQuery("&"), {
      method: "POST",
      body: form,
      headers: authHeaders(),
    });
    body = await answer.json();
  } catch (error) {
    if (asked === heatmapRequest) {
      say("The service cannot be reached. Check your connection and try again.", true);
    }
    return;
  }
  if (asked !== heatmapRequest) return;
  if (!answer.ok) {
    const code = body && body.error ? body.error.code : "";
    say(FRIENDLY[code] || (body && body.error ? body.error.message : "Something went wrong."), true);
    return;
  }
  say("");
  showPoster();
  shownGenre = genre;
  button.setAttribute("aria-pressed", "true");
  $("preview").src = "data:image/png;base64," + body.overlay_png;
  $("preview").alt = "The poster with the evidence for " + genre + " highlighted";
  $("heatmap-genre").textContent = genre + " " + percent(body.probability);
  $("heatmap-caption").hidden = false;
}

async function send(file) {
  heatmapRequest++;
  lastFile = file;
  if (posterUrl) URL.revokeObjectURL(posterUrl);
  posterUrl = URL.createObjectURL(file);
  showPoster();
  say("Reading the poster…");
  const form = new FormData();
  form.append("file", file);
  let answer;
  try {
    answer = await fetch("/predict?top_k=3" + versionQuery("&"), {
      method: "POST",
      body: form,
      headers: authHeaders(),
    });
  } catch (error) {
    say("The service cannot be reached. Check your connection and try again.", true);
    return;
  }
  let body = null;
  try {
    body = await answer.json();
  } catch (error) {
    body = null;
  }
  if (!answer.ok) {
    const code = body && body.error ? body.error.code : "";
    $("result").hidden = true;
    if (code === "unauthorized") $("key-row").hidden = false;
    say(FRIENDLY[code] || (body && body.error ? body.error.message : "Something went wrong."), true);
    return;
  }
  say("");
  draw(body);
}

function init() {
  loadThresholds();
  $("file").addEventListener("change", (event) => {
    if (event.target.files.length) send(event.target.files[0]);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("dragging");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    if (event.dataTransfer.files.length) send(event.dataTransfer.files[0]);
  });
  $("version").addEventListener("change", async () => {
    await loadThresholds();
    if (lastFile) send(lastFile);
  });
  $("retry").addEventListener("click", () => {
    sessionStorage.setItem("poster-genres-key", $("api-key").value);
    if (lastFile) send(lastFile);
  });
}

init();
