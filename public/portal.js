// Developer portal: "Copy" buttons next to a client id, a secret or an API key. Without JavaScript
// the buttons stay hidden and the read-only fields can still be selected and copied by hand.
for (const button of document.querySelectorAll('button[data-copy]')) {
  const source = document.getElementById(button.dataset.copy);
  if (!source || !navigator.clipboard) continue;
  const label = button.textContent;
  button.hidden = false;
  button.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(source.value);
      button.textContent = 'Copied';
    } catch {
      source.select();
      button.textContent = 'Selected';
    }
    setTimeout(() => { button.textContent = label; }, 2000);
  });
}
for (const field of document.querySelectorAll('input[data-select]')) {
  field.addEventListener('focus', () => field.select());
}
