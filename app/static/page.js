// The try-it page: upload a poster to /predict and draw every genre's probability.
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
  unauthorized: "This service needs an API key. Enter it below.",
};

const $ = (id) => document.getElementById(id);
let thresholds = {};
let lastFile = null;

function say(text, isError) {
  $("message").textContent = text;
  $("message").classList.toggle("error", Boolean(isError));
}

function percent(p) {
  return (p * 100).toFixed(1) + "%";
}

async function loadThresholds() {
  try {
    const answer = await fetch("/genres");
    if (!answer.ok) return;
    const body = await answer.json();
    thresholds = Object.fromEntries(body.genres.map((g) => [g.genre, g.threshold]));
  } catch (error) {
    thresholds = {};
  }
}

function draw(result) {
  const predicted = new Set(result.predicted.map((p) => p.genre));
  const bars = $("bars");
  bars.replaceChildren();
  const sorted = [...result.probabilities].sort((a, b) => b.probability - a.probability);
  for (const item of sorted) {
    const li = document.createElement("li");
    li.className = "bar" + (predicted.has(item.genre) ? " is-predicted" : "");
    li.dataset.genre = item.genre;
    li.dataset.probability = String(item.probability);
    const name = document.createElement("span");
    name.className = "bar-name";
    name.textContent = item.genre;
    const track = document.createElement("span");
    track.className = "bar-track";
    track.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = percent(item.probability);
    track.append(fill);
    if (item.genre in thresholds) {
      const mark = document.createElement("span");
      mark.className = "bar-threshold";
      mark.style.left = percent(thresholds[item.genre]);
      mark.title = "threshold " + percent(thresholds[item.genre]);
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
  const names = result.predicted.map((p) => "<strong>" + p.genre + "</strong>").join(", ");
  $("predicted").innerHTML = "Predicted: " + names;
  $("image-info").textContent =
    result.image.width + "×" + result.image.height + " " + result.image.format;
  $("model-version").textContent = "Model " + result.model + " " + result.version;
  $("result").hidden = false;
}

async function send(file) {
  lastFile = file;
  $("preview").src = URL.createObjectURL(file);
  say("Reading the poster…");
  const form = new FormData();
  form.append("file", file);
  const headers = {};
  const key = sessionStorage.getItem("poster-genres-key");
  if (key) headers["X-API-Key"] = key;
  let answer;
  try {
    answer = await fetch("/predict?top_k=3", { method: "POST", body: form, headers });
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
  $("retry").addEventListener("click", () => {
    sessionStorage.setItem("poster-genres-key", $("api-key").value);
    if (lastFile) send(lastFile);
  });
}

init();
