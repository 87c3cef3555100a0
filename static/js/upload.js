// Shows the upload's progress while htmx sends the file; the server takes over from there.
document.addEventListener("htmx:xhr:progress", (event) => {
  const form = event.target.closest("#upload-form");
  if (!form || !event.detail.lengthComputable) return;
  const bar = form.querySelector(".upload-progress");
  bar.hidden = false;
  bar.value = (event.detail.loaded / event.detail.total) * 100;
});
