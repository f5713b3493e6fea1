/* The costs pages' charts: each [data-chart] element is drawn from the plotly figure the server
   computed (a json_script of the same id). A bar of the top-agents chart opens that agent's
   costs, keeping the filters. Without this script the table views still show every value. */
(function () {
  "use strict";

  function draw(element) {
    var source = document.getElementById(element.getAttribute("data-chart"));
    if (!source || !window.Plotly) return;
    var figure = JSON.parse(source.textContent);
    window.Plotly.newPlot(element, figure.data, figure.layout, {
      responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"],
    });
    if (element.getAttribute("data-chart") === "chart-top-agents-figure") {
      element.on("plotly_click", function (event) {
        var slug = event.points && event.points[0] && event.points[0].customdata;
        if (slug) window.location.href = "agents/" + encodeURIComponent(slug) + "/" + window.location.search;
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), draw);
  });
})();
