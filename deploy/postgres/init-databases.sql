-- Create one database of the stack if it does not exist yet, owned by the stack's role.
-- psql variables: db (database name), owner (role).  Used by deploy/postgres/init-databases.sh in
-- the postgres container (MLflow's database) and by scripts/stack on the local server (both).
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\gexec
