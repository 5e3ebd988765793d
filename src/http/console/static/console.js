// okra-callbacks console: reload a page whose callback is still pending (body[data-refresh] =
// seconds) until its status settles. Times are left as the server wrote them, in UTC, so a time
// copied from a page means the same instant in the filters.
(function () {
  "use strict";
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
