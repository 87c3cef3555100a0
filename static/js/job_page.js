// A job's page: an import that turned out to be a track already separated moves the page to that
// job, and a new share link's copy button copies it.
function followMove(root) {
  const moved = root.matches?.("[data-moved-to]") ? root : root.querySelector?.("[data-moved-to]");
  if (moved) window.location.replace(moved.dataset.movedTo);
}

document.addEventListener("htmx:load", (event) => followMove(event.target));
followMove(document);

document.addEventListener("click", async (event) => {
  const button = event.target.closest?.("[data-copy-share]");
  if (!button) return;
  const field = button.parentElement.querySelector("[data-share-url]");
  field.select();
  try {
    await navigator.clipboard.writeText(field.value);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select and copy the link above";
  }
});
