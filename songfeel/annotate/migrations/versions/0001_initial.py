"""The survey's first schema: songs, questions, annotators, triplets, answers.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "songs",
        sa.Column("track_id", sa.String(255), primary_key=True),
        sa.Column("split", sa.String(32), nullable=False, server_default=""),
        sa.Column("exposures", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "questions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("song_1", sa.String(255), nullable=False),
        sa.Column("song_2", sa.String(255), nullable=False),
        sa.Column("song_3", sa.String(255), nullable=False),
        sa.Column("n_asked", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("n_answers", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index("ix_questions_n_answers", "questions", ["n_answers"])
    op.create_table(
        "annotators",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "triplets",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("annotator_id", sa.String(32), sa.ForeignKey("annotators.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("question_id", sa.String(40), sa.ForeignKey("questions.id"), nullable=False),
        sa.Column("repeat_of", sa.String(32), sa.ForeignKey("triplets.id"), nullable=True),
        sa.Column("song_a", sa.String(255), nullable=False),
        sa.Column("song_b", sa.String(255), nullable=False),
        sa.Column("song_c", sa.String(255), nullable=False),
        sa.Column("clip_a", sa.String(32), nullable=False),
        sa.Column("clip_b", sa.String(32), nullable=False),
        sa.Column("clip_c", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("annotator_id", "position", name="uq_triplets_annotator_position"),
    )
    op.create_index("ix_triplets_annotator_id", "triplets", ["annotator_id"])
    op.create_index("ix_triplets_question_id", "triplets", ["question_id"])
    op.create_index("ix_triplets_repeat_of", "triplets", ["repeat_of"])
    op.create_table(
        "answers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("annotator_id", sa.String(32), sa.ForeignKey("annotators.id"), nullable=False),
        sa.Column("triplet_id", sa.String(32), sa.ForeignKey("triplets.id"), nullable=False, unique=True),
        sa.Column("client_answer_id", sa.String(64), nullable=False),
        sa.Column("odd_one_out_song", sa.String(255), nullable=True),
        sa.Column("odd_one_out_clip", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("annotator_id", "client_answer_id", name="uq_answers_annotator_client_id"),
    )
    op.create_index("ix_answers_annotator_id", "answers", ["annotator_id"])


def downgrade() -> None:
    op.drop_table("answers")
    op.drop_table("triplets")
    op.drop_table("annotators")
    op.drop_table("questions")
    op.drop_table("songs")
