-- Run once by the postgres image on an empty data volume (docker-entrypoint-initdb.d),
-- as the POSTGRES_USER superuser (ferry). One database per Ferry service: a service
-- never reads another's tables, it calls its contract.
CREATE DATABASE registry OWNER ferry;
CREATE DATABASE ingest OWNER ferry;
CREATE DATABASE train OWNER ferry;
CREATE DATABASE serve OWNER ferry;
CREATE DATABASE monitor OWNER ferry;
