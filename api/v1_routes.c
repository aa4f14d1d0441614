/* The v1 routing table (docs/api.md). */
#include "api/v1.h"

size_t api_v1_routes(api_v1_t *a, tm_http_route_t out[API_V1_NROUTES])
{
    const tm_http_route_t routes[API_V1_NROUTES] = {
        {"GET", "/v1/health", api_v1_health, a, true},
        {"GET", "/v1/machines", api_v1_machines, a, false},
        {"GET", "/v1/machines/{machine}/points", api_v1_points, a, false},
        {"GET", "/v1/machines/{machine}/points/{selector}", api_v1_point, a, false},
        {"POST", "/v1/machines/{machine}/tags", api_v1_tags, a, false},
        {"POST", "/v1/jobs", api_v1_jobs_post, a, false},
        {"GET", "/v1/jobs", api_v1_jobs_list, a, false},
        {"GET", "/v1/jobs/{id}", api_v1_job_get, a, false},
        {"POST", "/v1/jobs/{id}/cancel", api_v1_job_cancel, a, false},
        {"GET", "/v1/groups", api_v1_groups, a, false},
        {"POST", "/v1/groups", api_v1_group_create, a, false},
        {"GET", "/v1/groups/{group}", api_v1_group_get, a, false},
        {"PATCH", "/v1/groups/{group}", api_v1_group_change, a, false},
        {"DELETE", "/v1/groups/{group}", api_v1_group_delete, a, false},
        {"GET", "/v1/groups/{group}/points", api_v1_group_points, a, false},
        {"POST", "/v1/groups/{group}/rounds", api_v1_group_round, a, false},
        {"GET", "/metrics", api_v1_metrics, a, false},
    };
    for (size_t i = 0; i < API_V1_NROUTES; i++)
        out[i] = routes[i];
    return API_V1_NROUTES;
}
