// Live validation: the server checks the YAML and redraws the graph as the trainer types.
(function () {
  "use strict";
  var source = document.querySelector("#case-form textarea[name=source]");
  var problems = document.getElementById("case-problems");
  var graph = document.getElementById("case-graph");
  var token = document.querySelector('meta[name="csrf-token"]');
  if (!source || !problems || !graph || !token || !window.fetch) return;
  var timer = null;
  function render(json) {
    problems.textContent = "";
    var box = document.createElement(json.problems.length ? "div" : "p");
    if (json.problems.length) {
      box.className = "alert";
      var heading = document.createElement("h2");
      heading.textContent = json.problems.length + " problem(s) to fix before publishing";
      box.appendChild(heading);
      var list = document.createElement("ul");
      json.problems.forEach(function (p) {
        var item = document.createElement("li");
        item.textContent = "Line " + p.line + ": " + p.message;
        list.appendChild(item);
      });
      box.appendChild(list);
    } else {
      box.className = "notice";
      box.textContent = "No problems found.";
    }
    problems.appendChild(box);
    graph.innerHTML = json.svg;  // server-rendered, every author string escaped
  }
  function say(message) {
    problems.textContent = "";
    var box = document.createElement("p");
    box.className = "alert";
    box.textContent = message;
    problems.appendChild(box);
  }
  source.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var data = new FormData();
      data.append("source", source.value);
      data.append("filename", source.dataset.filename);
      fetch(source.dataset.check, { method: "POST", body: data, credentials: "same-origin", headers: { "X-CSRFToken": token.content } })
        .then(function (r) {
          if (r.ok) return r.json().then(render);
          // Say why the check stopped rather than leave the last verdict showing as if current.
          say(r.status === 413
            ? "The text is too large to check (a case file may be at most 256 KiB). Nothing was saved."
            : "The live check failed (" + r.status + "). Use the Check button, or reload the page.");
        })
        .catch(function () { say("The live check could not reach the server. Use the Check button when you are back online."); });
    }, 500);
  });
})();
