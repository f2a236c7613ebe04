-- Nothing but comments and empty statements; psql runs nothing.
;
;;
/* ; */ ;
-- ;
