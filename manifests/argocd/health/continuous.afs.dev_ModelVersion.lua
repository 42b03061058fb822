-- Argo CD health of a ModelVersion (continuous.afs.dev). A version is a record of a
-- trained model: Healthy whatever its stage (a Rejected or Retired one is history, not a
-- fault). In deploy mode its Available condition counts while it serves: a Deployment
-- rolling out is Progressing, one that cannot be made (its name taken or invalid) Degraded.
local hs = pending("stage")
if hs ~= nil then return hs end
hs = {}
local stage = obj.status.stage
local available = condition("Available")
if stage == "Rejected" or stage == "Retired" or available == nil then
  hs.status = "Healthy"
  hs.message = stage
elseif available.status == "True" then
  hs.status = "Healthy"
  hs.message = stage .. ", " .. describe(available)
elseif available.reason == "NameTaken" or available.reason == "InvalidName" then
  hs.status = "Degraded"
  hs.message = describe(available)
else
  hs.status = "Progressing"
  hs.message = describe(available)
end
return hs
