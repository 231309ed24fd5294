// Small pieces of page behaviour the panels share.

// An error in its alert box: the server's own message, with the HTTP status when there was one.
export function showError(box, error) {
  const status = error && error.status ? ` (HTTP ${error.status})` : "";
  box.textContent = `${error && error.message ? error.message : String(error)}${status}`;
  box.hidden = false;
}

// Runs `work` with the button disabled and the error box cleared; shows what went wrong.
export async function busy(button, errorBox, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  errorBox.hidden = true;
  try {
    await work();
  } catch (error) {
    showError(errorBox, error);
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}
