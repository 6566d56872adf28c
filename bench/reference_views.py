"""Two trivial views that give `python -m bench.web_cpu` its scale (`--view plain`, `--view drf`):
what Django's handler and the project's middleware cost around any view, and what a DRF `APIView`
adds with a JSON parser and renderer and no authentication, permission or throttle. Whatever the
charge POST costs beyond the second is its own work."""

import json

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView


@csrf_exempt
def plain_view(request):
    return JsonResponse({"amount": json.loads(request.body)["amount"]})


class TrivialApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]

    def post(self, request):
        return Response({"amount": request.data["amount"]})


urlpatterns = [path("plain/", plain_view), path("drf/", TrivialApi.as_view())]
