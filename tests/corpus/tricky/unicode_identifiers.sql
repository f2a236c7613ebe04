-- Idéntifiants ünïcode 🚀: unquoted and quoted, in comments, strings and names.
CREATE TABLE café_menü (
    id integer PRIMARY KEY,
    "Größe" text NOT NULL DEFAULT 'groß',
    prénom text,
    заметка text DEFAULT 'привет; мир'
);
INSERT INTO café_menü (id, prénom) VALUES (1, 'Zoë 🚀; ok'), (2, '日本語；全角');
COMMENT ON TABLE café_menü IS 'menü; 🍰 ''quoted''';
/* 4-byte characters before a statement: 𝄞 𝕏 🚀 */
CREATE INDEX "idx_café_Größe" ON café_menü ("Größe");
CREATE VIEW "Übersicht" AS SELECT id, "Größe" FROM café_menü;
