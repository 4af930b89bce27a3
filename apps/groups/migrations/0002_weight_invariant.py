from django.db import migrations

# Tables are named through the trigger's own schema (TG_TABLE_SCHEMA), never through
# search_path, so the check is right whatever schema the session is in at commit.
CHECK = r"""
CREATE OR REPLACE FUNCTION groups_check_weights() RETURNS trigger AS $$
DECLARE
    gid bigint;
    group_status text;
    total integer;
    champions integer;
BEGIN
    IF TG_TABLE_NAME = 'groups_modelgroup' THEN
        gid := NEW.id;
    ELSIF TG_OP = 'DELETE' THEN
        gid := OLD.group_id;
    ELSE
        gid := NEW.group_id;
    END IF;
    EXECUTE format('SELECT status FROM %I.groups_modelgroup WHERE id = $1', TG_TABLE_SCHEMA)
        INTO group_status USING gid;
    IF group_status IS DISTINCT FROM 'active' THEN
        RETURN NULL;
    END IF;
    EXECUTE format(
        'SELECT COALESCE(SUM(weight) FILTER (WHERE role <> %L), 0), '
        'count(*) FILTER (WHERE role = %L) '
        'FROM %I.groups_membership WHERE group_id = $1 AND active',
        'shadow', 'champion', TG_TABLE_SCHEMA)
        INTO total, champions USING gid;
    IF total <> 100 THEN
        RAISE EXCEPTION 'weights of the active members of group % sum to %, not 100', gid, total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'group_weights_sum_100';
    END IF;
    IF champions = 0 THEN
        RAISE EXCEPTION 'active group % has no active champion', gid
            USING ERRCODE = 'check_violation', CONSTRAINT = 'group_has_champion';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER groups_membership_weights
    AFTER INSERT OR UPDATE OR DELETE ON groups_membership
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION groups_check_weights();
CREATE CONSTRAINT TRIGGER groups_group_weights
    AFTER INSERT OR UPDATE OF status ON groups_modelgroup
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION groups_check_weights();
"""

DROP = """
DROP TRIGGER IF EXISTS groups_group_weights ON groups_modelgroup;
DROP TRIGGER IF EXISTS groups_membership_weights ON groups_membership;
DROP FUNCTION IF EXISTS groups_check_weights();
"""


class Migration(migrations.Migration):
    """An active group's active non-shadow weights sum to 100 and it has a champion,
    checked by the database at commit (deferred, so a swap can pass through states
    that are briefly inconsistent inside one transaction)."""

    dependencies = [("groups", "0001_initial")]

    operations = [migrations.RunSQL(CHECK, DROP)]
