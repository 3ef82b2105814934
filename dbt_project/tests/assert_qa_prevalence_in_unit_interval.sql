-- QA prevalence and its interval lie in [0, 1], and the interval contains the estimate.
select *
from {{ ref('mart_prevalence_daily') }}
where prevalence not between 0 and 1
   or prevalence_ci_low not between 0 and 1
   or prevalence_ci_high not between 0 and 1
   or prevalence < prevalence_ci_low - 1e-9
   or prevalence > prevalence_ci_high + 1e-9
