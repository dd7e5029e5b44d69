/* The dashboard's charts, drawn with Chart.js when it is installed; the page shows
   tables otherwise. Colours come from the same CSS variables as the badges. */
(function () {
  "use strict";
  const holder = document.getElementById("chart-data");
  if (!holder || !window.Chart) return;
  const data = JSON.parse(holder.textContent);
  const style = getComputedStyle(document.documentElement);
  const tone = (name) => style.getPropertyValue("--tone-" + name).trim() || "#888";
  const fg = style.getPropertyValue("--muted").trim();
  const grid = style.getPropertyValue("--line").trim();
  const hours = data.starts.map((start) => new Date(start * 1000));
  const sameDay = hours.length <= 25;
  const label = (date) => sameDay
    ? date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleString(undefined, { weekday: "short", hour: "2-digit" });
  const labels = hours.map(label);
  const scales = {
    x: { stacked: true, ticks: { color: fg, maxRotation: 0, autoSkip: true, maxTicksLimit: 8 }, grid: { color: grid } },
    y: { stacked: true, beginAtZero: true, ticks: { color: fg, precision: 0 }, grid: { color: grid } },
  };
  const legend = { labels: { color: fg, boxWidth: 12 } };
  document.documentElement.classList.add("charts-ready");

  new window.Chart(document.getElementById("chart-outcomes"), {
    type: "bar",
    data: {
      labels,
      datasets: data.outcomes.map((set) => ({
        label: set.label, data: set.data, backgroundColor: tone(set.tone), borderWidth: 0,
      })),
    },
    options: { responsive: true, maintainAspectRatio: false, animation: false, scales, plugins: { legend } },
  });

  const seconds = (value) => (value == null ? null : value);
  new window.Chart(document.getElementById("chart-durations"), {
    type: "line",
    data: {
      labels,
      datasets: [
        { label: "p50", data: data.p50.map(seconds), borderColor: tone("info"), backgroundColor: tone("info"), spanGaps: true, pointRadius: 2 },
        { label: "p95", data: data.p95.map(seconds), borderColor: tone("orange"), backgroundColor: tone("orange"), spanGaps: true, pointRadius: 2 },
      ],
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      scales: {
        x: { ticks: { color: fg, maxRotation: 0, autoSkip: true, maxTicksLimit: 8 }, grid: { color: grid } },
        y: { beginAtZero: true, title: { display: true, text: "seconds", color: fg }, ticks: { color: fg }, grid: { color: grid } },
      },
      plugins: { legend },
    },
  });
})();
