"""An erased contact's stored inbox attachments are out of every member's reach the moment the
erasure commits, though the cron removes the files from Storage only on its next run."""

import uuid

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from tests.factories.inbox import whatsapp_channel, whatsapp_conversation
from tests.factories.workspaces import User, acting_as, add_member, create_user, fund, one

Conn = psycopg.Connection[DictRow]
KEY = "kPqBfXz3HOuJVD3mD5Gm2o7dE4pCQfVYbX9xO0n9T2U="


def visible(conn: Conn, who: User, bucket: str, path: str) -> bool:
    with acting_as(conn, who):
        row = one(
            conn,
            "select count(*) as n from storage.objects where bucket_id = %s and name = %s",
            (bucket, path),
        )
    return bool(row["n"])


def test_an_erased_contacts_attachment_is_hidden_before_the_cron_removes_it(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    member = add_member(conn, owner, "member")
    conversation = whatsapp_conversation(conn, whatsapp_channel(conn, owner, KEY))
    message = one(
        conn, "select id from public.messages where conversation_id = %s", (conversation,)
    )["id"]
    photo = f"{owner.workspace_id}/{conversation}/{message}/0-photo.jpg"
    conn.execute(
        "update public.messages set attachments = %s where id = %s",
        (Jsonb([{"kind": "image", "status": "stored", "storage_path": photo}]), message),
    )
    upload = f"{owner.workspace_id}/imports/{uuid.uuid4().hex}.csv"
    conn.execute(
        "insert into storage.objects (bucket_id, name) values ('inbox', %s), ('imports', %s)",
        (photo, upload),
    )
    assert visible(conn, member, "inbox", photo)
    # The bucket's folders are per workspace: someone of another workspace reads nothing.
    assert not visible(conn, create_user(conn), "inbox", photo)

    contact = one(
        conn,
        "select i.contact_id from public.conversations c"
        " join public.contact_identities i on i.id = c.identity_id where c.id = %s",
        (conversation,),
    )["contact_id"]
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact,))

    queued = one(
        conn, "select count(*) as n from private.inbox_media_removals where path = %s", (photo,)
    )
    assert queued == {"n": 1}  # the file is still in Storage, waiting for the cron ...
    assert not visible(conn, member, "inbox", photo)  # ... and nobody reads it meanwhile
    assert not visible(conn, owner, "inbox", photo)
    assert visible(conn, member, "imports", upload)  # other buckets are untouched
