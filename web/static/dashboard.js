// The dashboard's extras: the two charts (uPlot) and live refresh of the OLED picture, the facts and the charts.
// The page shows every fact without this file. Loaded with <script defer> (the CSP allows no inline script);
// uPlot only assigns element.style properties, which the CSP's style-src 'self' allows.
(function () {
  "use strict";

  var OLED_EVERY_MS = 3000;     // the display changes at most once a second; a glance every 3 s is live enough
  var FACTS_EVERY_MS = 15000;   // the facts: the page itself, fetched again, its [data-live] parts swapped in
  var CHARTS_EVERY_MS = 60000;  // round trips are kept a minute apart: nothing new sooner
  var DAY_S = 86400;
  var COLORS = ["#1f6feb", "#8250df", "#bf8700", "#1a7f37", "#e16f24", "#0a7ea4"];
  var BAD = "#cf222e";
  var CHART_HEIGHT = 200;

  var charts = {};     // "rtt" / "offset" -> uPlot
  var latest = null;   // the last /api/v1/history answer
  var stopped = false; // set when the session has ended: no more requests until the page is reloaded

  // -- data shaping --------------------------------------------------------------------------------

  // A null after every stretch longer than gapS without points, so a stopped agent is a gap, not a line.
  function withGaps(points, gapS) {
    var xs = [], ys = [];
    for (var i = 0; i < points.length; i++) {
      if (i > 0 && points[i][0] - points[i - 1][0] > gapS) {
        xs.push(points[i - 1][0] + 1);
        ys.push(null);
      }
      xs.push(points[i][0]);
      ys.push(points[i][1]);
    }
    return [xs, ys];
  }

  function rttData(history) {
    var labels = Object.keys(history.rtt);
    var tables = [], failedXs = [];
    labels.forEach(function (label) {
      var points = history.rtt[label];
      tables.push(withGaps(points, 5 * 60));
      points.forEach(function (p) { if (p[1] === null) failedXs.push(p[0]); });
    });
    // Minutes in which some target's sends all failed: red dots on the time axis, one per minute.
    failedXs.sort(function (a, b) { return a - b; });
    failedXs = failedXs.filter(function (x, i) { return x !== failedXs[i - 1]; });
    tables.push([failedXs, failedXs.map(function () { return 0; })]);
    return {labels: labels, data: uPlot.join(tables)};
  }

  function offsetData(history) {
    var points = history.offset;
    var line = withGaps(points, 30 * 60);
    var problems = points.filter(function (p) { return p[2] !== "ok" && p[1] !== null; });
    var bad = [problems.map(function (p) { return p[0]; }), problems.map(function (p) { return p[1]; })];
    return {data: uPlot.join([line, bad])};
  }

  // -- the charts ----------------------------------------------------------------------------------

  function zoneDate(zone) {
    if (!zone) return undefined;
    try {
      uPlot.tzDate(new Date(), zone);
      return function (ts) { return uPlot.tzDate(new Date(ts * 1e3), zone); };
    } catch (e) {
      return undefined;  // a zone this browser does not know: its own
    }
  }

  function xRange(spanS) {
    return function () {
      var now = latest ? latest.now : Date.now() / 1000;
      return [now - spanS, now];
    };
  }

  function options(el, spanS, series, yRange, unit) {
    var opts = {
      width: Math.max(200, el.clientWidth),
      height: CHART_HEIGHT,
      series: [{}].concat(series),
      scales: {x: {time: true, range: xRange(spanS)}, y: {range: yRange}},
      axes: [{}, {values: function (u, ticks) { return ticks.map(function (t) { return t + " " + unit; }); },
                  size: 64}],
      cursor: {drag: {x: false, y: false}},  // no zooming by drag: on a phone a drag scrolls the page
      legend: {live: el.clientWidth >= 480},  // values under the cursor where there is room; names only on a phone
    };
    var tz = zoneDate(latest && latest.zone);
    if (tz) opts.tzDate = tz;
    return opts;
  }

  function valueText(unit) {
    return function (u, v) { return v == null ? "–" : v.toFixed(1) + " " + unit; };
  }

  function failedPoints(label) {
    return {label: label, stroke: BAD, fill: BAD, paths: function () { return null; },
            points: {show: true, size: 7, stroke: BAD, fill: BAD}, value: function (u, v) {
              return v == null ? "" : "failed";
            }};
  }

  function drawRtt(history) {
    var el = document.getElementById("rtt-chart");
    if (!el) return;
    var shaped = rttData(history);
    var series = shaped.labels.map(function (label, i) {
      return {label: label, stroke: COLORS[i % COLORS.length], width: 1.5, value: valueText("ms"),
              points: {show: false}};
    });
    series.push(failedPoints("failed sends"));
    draw("rtt", el, shaped.data, function () {
      return options(el, DAY_S, series, function (u, min, max) { return [0, Math.max(10, (max || 0) * 1.1)]; }, "ms");
    }, series.length);
  }

  function drawOffset(history) {
    var el = document.getElementById("offset-chart");
    if (!el) return;
    var shaped = offsetData(history);
    var series = [
      {label: "offset", stroke: COLORS[0], width: 1.5, value: valueText("ms"), points: {show: false}},
      failedPoints("clock problem"),
    ];
    series[1].value = valueText("ms");
    draw("offset", el, shaped.data, function () {
      return options(el, 7 * DAY_S, series, function (u, min, max) {
        var m = Math.max(5, Math.abs(min || 0), Math.abs(max || 0)) * 1.1;
        return [-m, m];
      }, "ms");
    }, series.length);
  }

  function draw(name, el, data, makeOptions, seriesCount) {
    var chart = charts[name];
    if (chart && chart.series.length === seriesCount + 1) {
      chart.setData(data);
      return;
    }
    if (chart) chart.destroy();  // the targets changed (a new config): a chart with their lines
    el.textContent = "";
    charts[name] = new uPlot(makeOptions(), data, el);
  }

  function resize() {
    Object.keys(charts).forEach(function (name) {
      var el = document.getElementById(name + "-chart");
      if (el) charts[name].setSize({width: Math.max(200, el.clientWidth), height: CHART_HEIGHT});
    });
  }

  // -- refreshing ----------------------------------------------------------------------------------

  function sessionEnded() {
    stopped = true;
    var note = document.getElementById("stale");
    if (note) return;
    note = document.createElement("p");
    note.id = "stale";
    note.className = "notice";
    note.setAttribute("role", "status");
    note.textContent = "This page stopped updating: the session ended. Reload the page to log in again.";
    var main = document.querySelector("main");
    main.insertBefore(note, main.firstChild);
  }

  function loadCharts() {
    var el = document.querySelector("[data-history]");
    if (!el || stopped || typeof uPlot === "undefined") return;
    fetch(el.getAttribute("data-history"), {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (response) {
        if (response.status === 401) { sessionEnded(); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (history) {
        if (!history) return;
        latest = history;
        drawRtt(history);
        drawOffset(history);
      })
      .catch(function () { /* the appliance is rebooting or the Wi-Fi dropped: the next round tries again */ });
  }

  function loadFacts() {
    if (stopped) return;
    fetch(window.location.pathname, {credentials: "same-origin", headers: {Accept: "text/html"}})
      .then(function (response) {
        if (response.redirected || response.status === 401) { sessionEnded(); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var next = fresh.getElementById(el.id);
          if (next) el.replaceWith(document.adoptNode(next));
        });
      })
      .catch(function () {});
  }

  function loadOled() {
    var img = document.getElementById("oled");
    if (!img || stopped) return;
    // A new element swapped in once loaded: the picture never blanks while the next one is on its way.
    var next = img.cloneNode();
    next.addEventListener("load", function () { if (img.parentNode) img.replaceWith(next); });
    next.src = img.src.split("?")[0] + "?t=" + Date.now();
  }

  function every(ms, step) {
    // Nothing is fetched while the tab is hidden; coming back fetches at once.
    setInterval(function () { if (!document.hidden) step(); }, ms);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) step(); });
  }

  loadCharts();
  every(CHARTS_EVERY_MS, loadCharts);
  every(FACTS_EVERY_MS, loadFacts);
  every(OLED_EVERY_MS, loadOled);
  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(resize, 150);
  });
})();
