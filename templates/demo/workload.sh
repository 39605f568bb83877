#!/bin/sh
# A small steady workload on the demo database (tasks/demo.py), so that every panel of the dashboards
# moves: carts written (one cart in 300 emptied a round, so about 15,000 rows stay), a catalogue read by
# index and in full, and a report that keeps a lock for 20 s at a time. Each loop outlives the database
# going away (an incident) and carries on when it is back.
# psql reads PGHOST, PGDATABASE, PGUSER and PGPASSFILE from the environment.
set -u
# Errors go to the container's log (docker logs pgmon-demo-workload), results nowhere.
psql_quietly() { psql -X -q -v ON_ERROR_STOP=1 "$@" >/dev/null; }

until psql_quietly <<'SQL'
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS catalogue (id int PRIMARY KEY, name text NOT NULL, price numeric NOT NULL);
CREATE TABLE IF NOT EXISTS cart_items (id bigserial PRIMARY KEY, cart int NOT NULL, product int NOT NULL, qty int NOT NULL);
CREATE INDEX IF NOT EXISTS cart_items_cart ON cart_items (cart);
INSERT INTO catalogue SELECT g, 'product ' || g, g % 97 FROM generate_series(1, 5000) g ON CONFLICT DO NOTHING;
SQL
do sleep 5; done

# Many half-second statements rather than one long one: the session is active and holds its lock, and
# no statement is slow enough for the SlowQueries rule.
report() {
  while :; do
    {
      echo "BEGIN; SELECT count(*) FROM catalogue;"
      i=0
      while [ $i -lt 40 ]; do echo "SELECT pg_sleep(0.5);"; i=$((i + 1)); done
      echo "COMMIT;"
    } | psql_quietly "application_name=pgmon-demo-report" || sleep 5
  done
}
report &

while :; do
  psql_quietly <<'SQL' || sleep 5
INSERT INTO cart_items (cart, product, qty) SELECT (random() * 300)::int, (random() * 4999)::int + 1, 1 FROM generate_series(1, 50);
UPDATE cart_items SET qty = qty + 1 WHERE cart = (SELECT (random() * 300)::int);
DELETE FROM cart_items WHERE cart = (SELECT (random() * 300)::int);
SELECT name FROM catalogue WHERE id = (SELECT (random() * 4999)::int + 1);
SELECT count(*) FROM cart_items WHERE cart = (SELECT (random() * 300)::int);
SELECT sum(price) FROM catalogue;
SELECT c.cart, sum(p.price * c.qty) FROM cart_items c JOIN catalogue p ON p.id = c.product WHERE c.cart < 10 GROUP BY 1;
SQL
  sleep 2
done
