// The upload form: progress while htmx sends the files, a size and count check before sending,
// and the server's sentence when it refuses the upload (413 too large, 400 too many files).
function showUploadError(form, text) {
  let error = form.querySelector("[data-upload-error]");
  if (!error) {
    error = document.createElement("p");
    error.className = "error";
    error.setAttribute("role", "alert");
    error.setAttribute("data-upload-error", "");
    form.querySelector("input[type=file]").insertAdjacentElement("afterend", error);
  }
  error.textContent = text;
  const bar = form.querySelector(".upload-progress");
  if (bar) bar.hidden = true;
}

document.addEventListener("htmx:xhr:progress", (event) => {
  const form = event.target.closest("#upload-form");
  if (!form || !event.detail.lengthComputable) return;
  const bar = form.querySelector(".upload-progress");
  bar.hidden = false;
  bar.value = (event.detail.loaded / event.detail.total) * 100;
});

document.addEventListener("htmx:beforeRequest", (event) => {
  const form = event.target.closest("#upload-form");
  if (!form) return;
  const files = Array.from(form.querySelector("input[type=file]").files);
  const maxBytes = Number(form.dataset.maxBytes);
  const maxFiles = Number(form.dataset.maxFiles);
  const total = files.reduce((sum, file) => sum + file.size, 0);
  const megabytes = Math.round(maxBytes / 1024 / 1024);
  if (maxFiles && files.length > maxFiles) {
    event.preventDefault();
    showUploadError(form, `Too many files in one upload: send at most ${maxFiles} at once.`);
  } else if (maxBytes && total > maxBytes) {
    event.preventDefault();
    showUploadError(
      form,
      `This upload is too large: the limit is ${megabytes} MB for all files sent together. Send fewer or smaller files.`,
    );
  }
});

document.addEventListener("htmx:responseError", (event) => {
  const form = event.target.closest("#upload-form");
  if (!form) return;
  const page = new DOMParser().parseFromString(event.detail.xhr.responseText, "text/html");
  const sentence = page.querySelector("[data-upload-error]");
  showUploadError(form, sentence ? sentence.textContent : "The upload failed. Please try again.");
});

document.addEventListener("htmx:sendError", (event) => {
  const form = event.target.closest("#upload-form");
  if (!form) return;
  showUploadError(form, "The upload was interrupted. Check your connection and the size limit, then try again.");
});
