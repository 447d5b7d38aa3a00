/* songfeel listening survey: consent, one odd-one-out question at a time, keyboard path.
 * Server data is only ever written with textContent / attributes, never as HTML. */
(function () {
  "use strict";

  var STORAGE_KEY = "songfeel.annotator_id";
  var LABELS = ["A", "B", "C"];
  var page = document.body.getAttribute("data-page");
  var statusLine = document.getElementById("status");

  function say(text) {
    if (statusLine) { statusLine.textContent = text; }
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  async function call(method, url, body) {
    var init = { method: method, headers: { "Accept": "application/json" }, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    var response = await fetch(url, init);
    var data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    return { status: response.status, data: data, retryAfter: Number(response.headers.get("Retry-After") || "1") };
  }

  /* Retries network failures and 5xx with backoff and 429 after Retry-After; the caller's body
   * (with its client_answer_id) is sent unchanged, so a retried answer is stored once. */
  async function reliable(method, url, body) {
    for (var attempt = 0; ; attempt++) {
      var result = null;
      try { result = await call(method, url, body); } catch (e) { result = null; }
      if (result && result.status < 500 && result.status !== 429) { return result; }
      if (attempt >= 6) { return result || { status: 0, data: null }; }
      var limited = result && result.status === 429;
      say(limited ? "A little slower, please\u2026" : "Connection problem, retrying\u2026");
      await sleep(limited ? result.retryAfter * 1000 : Math.min(8000, 500 * Math.pow(2, attempt)));
    }
  }

  function detail(result) {
    return (result.data && result.data.detail) ? String(result.data.detail) : "error " + result.status;
  }

  function consentPage() {
    var agree = document.getElementById("agree");
    var start = document.getElementById("start");
    agree.addEventListener("change", function () { start.disabled = !agree.checked; });
    start.addEventListener("click", async function () {
      if (!agree.checked) { return; }
      start.disabled = true;
      say("Starting\u2026");
      var result = await reliable("POST", "/api/sessions");
      if (result.status === 201 && result.data && result.data.annotator_id) {
        window.sessionStorage.setItem(STORAGE_KEY, result.data.annotator_id);
        window.location.assign("/listen");
      } else {
        say("Could not start: " + detail(result));
        start.disabled = false;
      }
    });
  }

  function listenPage() {
    var annotatorId = window.sessionStorage.getItem(STORAGE_KEY);
    if (!annotatorId) { window.location.assign("/"); return; }
    var section = document.getElementById("question");
    var buttons = Array.prototype.slice.call(document.querySelectorAll("button.choice"));
    var players = LABELS.map(function (label) { return document.getElementById("audio-" + label); });
    var current = null;
    var answerId = null;
    var busy = true;

    function enable(on) {
      busy = !on;
      buttons.forEach(function (button) { button.disabled = !on; });
    }

    function pauseAll() {
      players.forEach(function (player) { player.pause(); });
    }

    async function load() {
      enable(false);
      var result = await reliable("GET", "/api/triplets/next?annotator_id=" + encodeURIComponent(annotatorId));
      if (result.status === 404) {
        window.sessionStorage.removeItem(STORAGE_KEY);
        window.location.assign("/");
        return;
      }
      if (result.status !== 200 || !result.data) { say("Could not load the next question: " + detail(result)); return; }
      if (result.data.done) {
        window.location.assign("/thanks?annotator_id=" + encodeURIComponent(annotatorId));
        return;
      }
      current = result.data;
      answerId = randomId();
      current.clips.forEach(function (clip, i) {
        players[i].setAttribute("src", clip.audio_url);
        players[i].load();
      });
      document.getElementById("position").textContent = String(current.position);
      document.getElementById("total").textContent = String(current.total);
      var progress = document.getElementById("progress");
      progress.max = current.total;
      progress.value = current.answered;
      section.hidden = false;
      say("Question " + current.position + " of " + current.total + ": listen, then choose.");
      enable(true);
    }

    async function choose(choice) {
      if (busy || !current) { return; }
      enable(false);
      var index = LABELS.indexOf(choice);
      var body = {
        annotator_id: annotatorId,
        triplet_id: current.triplet_id,
        odd_one_out: index >= 0 ? current.clips[index].clip_id : null,
        client_answer_id: answerId
      };
      say("Saving\u2026");
      var result = await reliable("POST", "/api/answers", body);
      if (result.status === 200 || result.status === 201 || result.status === 409) {
        pauseAll();
        await load();
      } else {
        say("Your answer was not saved: " + detail(result));
        enable(true);
      }
    }

    buttons.forEach(function (button) {
      button.addEventListener("click", function () { choose(button.getAttribute("data-choice")); });
    });

    document.addEventListener("keydown", function (event) {
      if (event.altKey || event.ctrlKey || event.metaKey) { return; }
      var key = event.key.toLowerCase();
      var play = ["1", "2", "3"].indexOf(key);
      if (play >= 0) {
        var player = players[play];
        if (player.paused) { pauseAll(); player.play().catch(function () {}); } else { player.pause(); }
        event.preventDefault();
      } else if (key === "a" || key === "b" || key === "c") {
        choose(key.toUpperCase());
        event.preventDefault();
      } else if (key === "d") {
        choose("none");
        event.preventDefault();
      }
    });

    players.forEach(function (player) {
      player.addEventListener("play", function () {
        players.forEach(function (other) { if (other !== player) { other.pause(); } });
      });
    });

    load();
  }

  if (page === "consent") { consentPage(); }
  if (page === "listen") { listenPage(); }
})();
