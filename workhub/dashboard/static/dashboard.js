// Draws every <canvas data-chart='{...}'> with the vendored Chart.js, on load and after htmx swaps.
(function () {
  "use strict";
  var css = getComputedStyle(document.documentElement);
  function color(name) {
    return (css.getPropertyValue("--c-" + name) || "").trim() || "#4b6cb7";
  }

  function draw(canvas) {
    if (!window.Chart || canvas.dataset.drawn) return;
    var spec = JSON.parse(canvas.dataset.chart);
    var datasets = spec.series.map(function (s) {
      var c = color(s.color || "line");
      var kind = s.kind || spec.type;
      return {
        label: s.label, data: s.data, type: kind,
        backgroundColor: kind === "line" ? c : c + "cc", borderColor: c,
        borderWidth: kind === "line" ? 2 : 0, pointRadius: kind === "line" ? 3 : 0,
        tension: 0, spanGaps: true, order: kind === "line" ? 0 : 1,
        stack: kind === "line" ? undefined : "checks",
      };
    });
    var y = {
      title: { display: !!spec.y, text: spec.y }, beginAtZero: !spec.reverse,
      reverse: !!spec.reverse, stacked: !!spec.stacked, ticks: { precision: 0 },
    };
    if (spec.max) y.max = spec.max;
    canvas.dataset.drawn = "1";
    canvas._chart = new Chart(canvas, {
      type: spec.type, data: { labels: spec.labels, datasets: datasets },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom" }, title: { display: false } },
        scales: { x: { title: { display: !!spec.x, text: spec.x }, stacked: !!spec.stacked }, y: y },
      },
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (e) { drawAll(e.target); });
  // a chart replaced by a refresh must release its canvas
  document.addEventListener("htmx:beforeSwap", function (e) {
    e.target.querySelectorAll("canvas[data-chart]").forEach(function (c) { if (c._chart) c._chart.destroy(); });
  });
})();
