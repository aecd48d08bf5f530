// The login page: says so when the last try failed (the server redirects with ?failed=1).
const failed = new URLSearchParams(location.search).has('failed');
const p = document.getElementById('failed');
if (p !== null) p.hidden = !failed;
document.getElementById('token')?.focus();
