-- Bulk catalog writes: the variant upsert feeds the title search itself,
-- once per transaction and only for titles that are new or changed, instead
-- of a trigger firing for every row (an upsert fired the update trigger,
-- deleting and re-adding an unchanged title). Deletes keep their trigger.
DROP TRIGGER variants_title_insert;
DROP TRIGGER variants_title_update;
