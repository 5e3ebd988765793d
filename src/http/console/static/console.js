// okra-callbacks console: show times in the browser's time zone, and reload a page whose
// callback is still pending (body[data-refresh] = seconds) until its status settles.
(function () {
  "use strict";
  document.querySelectorAll("time[datetime]").forEach(function (el) {
    var when = new Date(el.getAttribute("datetime"));
    if (!isNaN(when.getTime())) {
      el.title = el.textContent;
      el.textContent = when.toLocaleString();
    }
  });
  var every = Number(document.body.getAttribute("data-refresh"));
  if (every > 0) {
    setTimeout(function () {
      // Drop one-off messages (?replayed=1) from the reloaded page.
      window.location.replace(window.location.pathname);
    }, every * 1000);
  }
  document.querySelectorAll("button.danger").forEach(function (button) {
    button.addEventListener("click", function () {
      button.form.classList.add("sending");
    });
  });
})();
