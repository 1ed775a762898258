-- Customers are searched by a substring of their name (`name_search LIKE '%…%'`), which no
-- b-tree index can serve (the plan scans the table), so the index only cost a random insert
-- for every customer created, imported or renamed.
DROP INDEX customers_name_search;
