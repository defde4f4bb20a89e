// OAuth 2.0 Form Post Response Mode: send the response on without a click. Without JavaScript the
// page shows a Continue button that does the same.
document.getElementById('form-post')?.submit();
