#!/bin/sh
# The alert sink's page (tasks/demo.py): what it received, newest first, refreshed every 10 s.
KEPT=/tmp/received
printf 'Content-Type: text/html; charset=utf-8\r\n\r\n'
cat <<'HTML'
<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>pgmon demo: alerts received</title>
<style>body{font-family:sans-serif;margin:2em;max-width:60em}pre{white-space:pre-wrap;background:#f3f3f3;padding:.6em}</style>
</head><body>
<h1>pgmon demo: alerts received</h1>
<p>What the demo's Alertmanager sent here as Discord and Telegram messages (nothing leaves the host),
newest first; <a href="/cgi-bin/messages">as text</a>.</p>
HTML
names=$(ls -r "$KEPT" 2>/dev/null | head -n 100)
if [ -z "$names" ]; then
  echo "<p>Nothing yet. Cause an incident: <code>pyinfra -y inventory.py demo.py --data pgmon_demo_incident=start</code></p>"
fi
for name in $names; do
  printf '<h2>%s, %s</h2>\n<pre>' "${name##*.}" "${name%%.*}"
  # The JSON as received, HTML-escaped, with the escapes of its strings (\n, \", <, >, &) shown as what they stand for.
  sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/\\n/\n/g' -e 's/\\"/"/g' \
    -e 's/\\u003c/\&lt;/g' -e 's/\\u003e/\&gt;/g' -e 's/\\u0026/\&amp;/g' "$KEPT/$name"
  echo '</pre>'
done
echo '</body></html>'
